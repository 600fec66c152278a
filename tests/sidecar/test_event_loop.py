"""The sidecar runs on uvloop by default; ``--event-loop asyncio`` (or the variable) opts out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sluice_sidecar.service.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
SERVING = "sluice sidecar serving LLM API"


def serving_line(extra_args: list[str], env: dict[str, str]) -> str:
    """Start ``python -m sluice_sidecar`` on free ports; its "serving" log line, then stop it."""
    ports = ["--data-port", "0", "--admin-port", "0"]
    argv = [sys.executable, "-m", "sluice_sidecar", *ports, "--no-watch", *extra_args]
    pythonpath = os.pathsep.join([str(REPO / "sidecar"), str(REPO)])
    proc = subprocess.Popen(
        argv,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": pythonpath, **env},
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # ends when the process does: no wait can hang past it
            if SERVING in line:
                return line
        raise AssertionError(f"the sidecar exited with {proc.wait()} before serving")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_the_default_loop_is_uvloop() -> None:
    assert load_settings([], {}).event_loop == "uvloop"
    assert "uvloop event loop" in serving_line([], {})


def test_asyncio_loop_on_request() -> None:
    assert load_settings(["--event-loop", "asyncio"], {}).event_loop == "asyncio"
    assert "asyncio event loop" in serving_line([], {"SLUICE_EVENT_LOOP": "asyncio"})


def test_an_unknown_loop_is_an_invalid_setting() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sluice_sidecar"],
        env={**os.environ, "PYTHONPATH": str(REPO / "sidecar"), "SLUICE_EVENT_LOOP": "trio"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "event_loop" in done.stderr
