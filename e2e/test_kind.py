"""The kind scenario (``e2e/kind/run``) where Docker and kind exist; a loud skip elsewhere.

This machine has no Docker engine, so here it skips with the script's reason. What the
scenario calls that can run without Docker (image builds, the chart install with the operator
from its image, the quickstart) is tested by ``tests/images/``, ``test_helm_install.py`` and
``test_quickstart.py``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
SCRIPT = Path(__file__).resolve().parent / "kind" / "run"
CANNOT_RUN = 3  # what `e2e/kind/run --check` exits with when a tool is missing


@pytest.mark.timeout(1800)
def test_kind_scenario() -> None:
    check = subprocess.run(
        ["bash", str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60, check=False
    )
    if check.returncode == CANNOT_RUN:
        pytest.skip(f"KIND SCENARIO NOT RUN: {check.stdout.strip()}")
    assert check.returncode == 0, check.stdout + check.stderr
    result = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=1700, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "kind: PASSED" in result.stdout
