"""A real ``redis-server`` on a free loopback port, for the shared cache and budget tests.

Started once per test session by the ``redis_server`` fixture (tests/economics/conftest.py),
without persistence; tests flush it before use. When the binary is missing the tests that need
it skip with the reason (``scripts/system-packages`` installs Debian's ``redis-server``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass

READY_LINE = "Ready to accept connections"
START_LIMIT_S = 10.0


@dataclass
class RedisServer:
    process: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def missing_reason() -> str | None:
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (scripts/system-packages installs Debian's package)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_redis() -> RedisServer:
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    deadline = time.monotonic() + START_LIMIT_S
    seen = []
    for line in process.stdout:  # blocks until redis prints its next line: an event, not a poll
        seen.append(line)
        if READY_LINE in line:
            return RedisServer(process, port)
        if time.monotonic() > deadline:
            break
    process.kill()
    raise RuntimeError("redis-server did not start:\n" + "".join(seen[-20:]))
