"""The load generator for ``proxy_overhead.py``: wrk, its Lua script, and its figures.

One ``run`` is one bounded wrk run (``-d`` seconds) of non-streaming chat completions against
one URL; wrk's Lua ``done()`` hook prints a single machine-readable line that ``parse`` reads.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

REQUEST_BODY = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Say hello to the benchmark in a few words"}],
    "max_tokens": 16,
}
MARK = "SLUICE_WRK"
LUA = """\
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer test"
%(extra)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "%(mark)s requests=%%d duration_us=%%d p50_us=%%.0f p90_us=%%.0f p99_us=%%.0f "
    .. "mean_us=%%.0f max_us=%%.0f status_errors=%%d socket_errors=%%d\\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
"""
_LINE = re.compile(MARK + r" (.*)")


@dataclasses.dataclass(frozen=True)
class WrkResult:
    """One wrk run's figures; latencies in microseconds."""

    requests: int
    duration_us: int
    p50_us: float
    p90_us: float
    p99_us: float
    mean_us: float
    max_us: float
    status_errors: int
    socket_errors: int

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0


def write_script(
    directory: Path,
    name: str = "chat",
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Path:
    """A wrk Lua script POSTing ``body`` (default: the chat request) with extra headers."""
    extra = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in (headers or {}).items())
    path = directory / f"{name}.lua"
    payload = json.dumps(REQUEST_BODY if body is None else body)
    path.write_text(LUA % {"body": payload, "extra": extra, "mark": MARK})
    return path


def parse(output: str) -> WrkResult:
    match = _LINE.search(output)
    if match is None:
        raise RuntimeError(f"wrk printed no {MARK} line:\n{output[-2000:]}")
    fields = dict(pair.split("=", 1) for pair in match.group(1).split())
    values = {f.name: float(fields[f.name]) for f in dataclasses.fields(WrkResult)}
    for name in ("requests", "duration_us", "status_errors", "socket_errors"):
        values[name] = int(values[name])
    return WrkResult(**values)  # type: ignore[arg-type]


def run(
    url: str,
    script: Path,
    *,
    connections: int,
    duration_s: float,
    cpu: int | None,
) -> WrkResult:
    """One wrk run with one thread (pinned to ``cpu`` when given) and ``connections``."""
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    if cpu is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", str(cpu), *argv]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration_s + 30, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return parse(done.stdout)
