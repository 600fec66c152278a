"""A real OpenTelemetry Collector on loopback ports, writing what it receives to files.

The binary is the pinned build of ``e2e/otelcol/build`` (cached outside the repository).
When it is missing, ``collector_binary()`` runs the build script itself, and a failed build
raises ``CollectorUnavailable`` with the script's recorded reason (its log tail): the tests
that need the collector fail with it, never skip. ``Collector`` writes one OTLP/JSON request
per line (the file exporter's format) to ``traces.jsonl`` and ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "e2e" / "otelcol" / "build"
BUILD_TIMEOUT_S = 900  # a cold build takes about 3 minutes on 2 busy cores
START_TIMEOUT_S = 30
# For the modules whose tests start a collector: the first one may build it (pytest's
# default 120 s per test counts fixture set-up).
NEEDS_COLLECTOR = pytest.mark.timeout(BUILD_TIMEOUT_S + 60)


class CollectorUnavailable(Exception):
    """The collector binary could not be built; ``str()`` says why."""


def collector_binary() -> Path:
    """The pinned collector, built first when it is missing or out of date."""
    binary = Path(_script("--print-bin").stdout.strip())
    result = _script(timeout=BUILD_TIMEOUT_S, check=False)
    if result.returncode != 0 or not binary.is_file():
        failed = binary.parent.parent / "failed" / "otelcol"
        reason = failed.read_text(errors="replace").strip() if failed.is_file() else ""
        raise CollectorUnavailable(
            f"e2e/otelcol/build exited {result.returncode}: "
            f"{reason or result.stderr.strip()[-2000:] or 'no reason recorded'}"
        )
    return binary


def _script(
    *args: str, timeout: float = 30, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(BUILD_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


START_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Collector:
    binary: Path
    directory: Path
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    launcher: tuple[str, ...] = ()  # e.g. ("taskset", "-c", "1") in the benchmark
    process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log(self) -> Path:
        return self.directory / "collector.log"

    def config(self) -> str:
        traces, metrics = self.directory / "traces.jsonl", self.directory / "metrics.jsonl"
        # The collector's own telemetry is off: its default :8888 port would collide between
        # collectors running at once.
        return f"""
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{self.grpc_port}"}}
      http: {{endpoint: "127.0.0.1:{self.http_port}"}}
exporters:
  file/traces: {{path: "{traces}", flush_interval: 100ms}}
  file/metrics: {{path: "{metrics}", flush_interval: 100ms}}
service:
  telemetry:
    metrics: {{level: none}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [file/traces]}}
    metrics: {{receivers: [otlp], exporters: [file/metrics]}}
"""

    def start(self) -> None:
        """Start it; ports another process took between choosing and binding are chosen again
        (free_port cannot hold them)."""
        for _ in range(START_ATTEMPTS - 1):
            try:
                return self._start()
            except RuntimeError:
                if "address already in use" not in self.log_tail():
                    raise
                self.grpc_port, self.http_port = free_port(), free_port()
        self._start()

    def _start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "collector.yaml"
        config.write_text(self.config())
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*self.launcher, str(self.binary), "--config", f"file:{config}"],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (_listening(self.grpc_port) and _listening(self.http_port)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the collector did not start:\n{self.log_tail()}")
            time.sleep(0.02)  # a port opening announces nothing to wait on

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def spans(self) -> list[dict[str, Any]]:
        """Every span received so far, each with its resource attributes under ``resource``."""
        return _items(self.directory / "traces.jsonl", "resourceSpans", "scopeSpans", "spans")

    def metrics(self) -> list[dict[str, Any]]:
        """Every metric received so far (one entry per export), with ``resource`` attributes."""
        return _items(
            self.directory / "metrics.jsonl", "resourceMetrics", "scopeMetrics", "metrics"
        )


def _items(path: Path, resources_key: str, scopes_key: str, key: str) -> list[dict[str, Any]]:
    found = []
    for request in _lines(path):
        for by_resource in request.get(resources_key, []):
            resource = attributes_of(by_resource.get("resource", {}))
            for scope in by_resource.get(scopes_key, []):
                found.extend({**item, "resource": resource} for item in scope.get(key, []))
    return found


def attributes_of(item: dict[str, Any]) -> dict[str, Any]:
    """OTLP/JSON ``attributes`` as a plain dict (int values arrive as strings in OTLP/JSON)."""
    found: dict[str, Any] = {}
    for entry in item.get("attributes", []):
        value = entry.get("value", {})
        if "intValue" in value:
            found[entry["key"]] = int(value["intValue"])
        else:
            found[entry["key"]] = next(iter(value.values()), None)
    return found


def data_points(metric: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for kind in ("histogram", "sum", "gauge"):
        yield from metric.get(kind, {}).get("dataPoints", [])


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                return  # the line being written right now; the next read sees it whole


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
