"""A real Prometheus (Debian's /usr/bin/prometheus) for the tests: scraping loopback targets
every second, evaluating the chart's rules every second, queried through its HTTP API.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.prometheus.rules import RULES_FILE
from tests.support.redis_server import free_port

POLL_S = 0.1


@dataclass(frozen=True)
class Target:
    """A scraped endpoint and the labels the chart's PodMonitor would give it."""

    address: str
    labels: dict[str, str]


def binary() -> str | None:
    return shutil.which("prometheus")


class Prometheus:
    def __init__(self, process: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.http = aiohttp.ClientSession()

    async def api(self, path: str, **params: str) -> Any:
        async with self.http.get(self.url + "/api/v1/" + path, params=params) as response:
            body = await response.json()
        assert body["status"] == "success", body
        return body["data"]

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's samples (vector or scalar), with their values as floats."""
        data = await self.api("query", query=promql)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": float(data["result"][1])}]
        return [{"metric": r["metric"], "value": float(r["value"][1])} for r in data["result"]]

    async def has_data(self, promql: str, *, since: float | None = None) -> bool:
        """At least one sample that is a number (not NaN: a quantile of no observations): now,
        or with ``since`` (a Unix time) at any second from then to now, as a dashboard whose
        time range covers that period would show it."""
        if since is None:
            return any(not math.isnan(s["value"]) for s in await self.query(promql))
        data = await self.api(
            "query_range", query=promql, start=f"{since:.3f}", end=f"{time.time():.3f}", step="1"
        )
        values = (float(v) for series in data["result"] for _, v in series["values"])
        return any(not math.isnan(v) for v in values)

    async def without_data(
        self, promql: list[str], *, limit_s: float, since: float | None = None
    ) -> list[str]:
        """The queries still without data (``has_data``) once all have it or ``limit_s`` has
        passed."""
        empty = list(promql)

        async def all_have_data() -> bool:
            empty[:] = [q for q in empty if not await self.has_data(q, since=since)]
            return not empty

        with contextlib.suppress(TimeoutError):  # then the caller names the empty ones
            await eventually(all_have_data, limit_s=limit_s)
        return empty

    async def close(self) -> None:
        await self.http.close()
        if self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


async def start_prometheus(
    workdir: Path, targets: list[Target], *, job: str = "sluice-sidecar", honor_labels: bool = False
) -> Prometheus:
    """Started and ready. ``honor_labels``: as the chart's ServiceMonitor scrapes the operator."""
    workdir.mkdir(exist_ok=True)  # noqa: ASYNC240 - once, before the process exists
    prometheus = binary()
    assert prometheus is not None
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [
            {
                "job_name": job,
                "honor_labels": honor_labels,
                "static_configs": [{"targets": [t.address], "labels": t.labels} for t in targets],
            }
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = workdir / "prometheus.log"
    process = await asyncio.create_subprocess_exec(
        prometheus,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    server = Prometheus(process, port, log)
    try:
        await eventually(lambda: _ready(server), limit_s=20)
    except BaseException:
        await server.close()
        raise
    return server


async def eventually(check: Callable[[], Awaitable[bool]], *, limit_s: float) -> None:
    """Await ``check()`` until it holds: ingestion and rule evaluation announce nothing."""
    async with asyncio.timeout(limit_s):
        while not await check():  # noqa: ASYNC110 - Prometheus announces no ingestion
            await asyncio.sleep(POLL_S)


async def _ready(server: Prometheus) -> bool:
    if server.process.returncode is not None:
        raise RuntimeError(f"prometheus exited: {server.log.read_text()[-2000:]}")
    try:
        async with server.http.get(server.url + "/-/ready") as response:
            return response.status == 200
    except aiohttp.ClientConnectionError:
        return False
