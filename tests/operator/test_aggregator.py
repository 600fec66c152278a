"""The budget aggregator's collection against a real HTTP "sidecar" on loopback.

What a sidecar answers on ``GET /admin/usage`` is read as the contract's ``UsageReport``: an
answer that does not validate leaves that pod out of the round (its spend is not invented or
corrupted), and the push back is an ``ExternalUsage`` on the wire.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sluice_operator.aggregator import BudgetAggregator
from sluice_operator.pusher import Pusher
from sluice_operator.settings import OperatorSettings
from tests.operator.fake_kube import NAMESPACE, budget, deployment, pod
from tests.operator.writable_kube import WritableKube

NOW = dt.datetime(2026, 12, 15, 12, tzinfo=dt.UTC)
PERIOD = "2026-12-01T00:00:00+00:00"
IDENTITY = f"{NAMESPACE}/monthly"
ROW = {"budget": IDENTITY, "periodStart": PERIOD, "spentUSD": "2", "tokens": 2}


class Sidecar:
    """One sidecar's admin API: a fixed usage answer; keeps the external spend pushed to it."""

    def __init__(self, usage: Any) -> None:
        self.usage = usage
        self.pushed: list[Any] = []
        app = web.Application()
        app.router.add_get("/admin/usage", self._usage)
        app.router.add_put("/admin/budgets/external", self._external)
        self.server = TestServer(app, host="127.0.0.1")

    async def _usage(self, request: web.Request) -> web.Response:
        return web.json_response(self.usage)

    async def _external(self, request: web.Request) -> web.Response:
        self.pushed.append(orjson.loads(await request.read()))
        return web.json_response({"applied": 1})


@pytest.fixture
def kube() -> WritableKube:
    spec = {"selector": {"matchLabels": {"app": "studio"}}, "limits": {"costUSD": 10}}
    return WritableKube(
        budgets_=[budget("monthly", spec)],
        deployments_=[deployment("studio", {"app": "studio"})],
        pods_=[pod("a", "studio")],
    )


async def collect(kube: WritableKube, usage: Any) -> Sidecar:
    sidecar = Sidecar(usage)
    await sidecar.server.start_server()
    settings = OperatorSettings(admin_host_override="127.0.0.1", admin_port=sidecar.server.port)
    pusher = Pusher(settings)
    await pusher.start()
    try:
        aggregator = BudgetAggregator(kube, pusher, settings, clock=lambda: NOW)  # type: ignore[arg-type]
        await aggregator.collect(NAMESPACE)
    finally:
        await pusher.close()
        await sidecar.server.close()
    return sidecar


async def test_a_pods_spend_is_folded_and_the_others_spend_pushed_back(kube: WritableKube) -> None:
    sidecar = await collect(kube, {"workload": "studio", "totals": {}, "budgets": [ROW]})
    ((name, patch),) = kube.patches
    assert (name, patch["spentUSD"], patch["tokens"]) == ("monthly", "2.000000", 2)
    assert sidecar.pushed == [
        {"budgets": [{"budget": IDENTITY, "periodStart": PERIOD, "spentUSD": "0", "tokens": 0}]}
    ]


@pytest.mark.parametrize(
    "usage",
    [
        {"budgets": [{key: value for key, value in ROW.items() if key != "budget"}]},
        {"budgets": [{**ROW, "spentUSD": "NaN"}]},
        {"budgets": [{**ROW, "tokens": -3}]},
        {"budgets": "all of them"},
    ],
    ids=["no-budget", "nan", "negative-tokens", "not-a-list"],
)
async def test_an_answer_that_is_not_a_usage_report_leaves_the_pod_out(
    kube: WritableKube, usage: Any
) -> None:
    sidecar = await collect(kube, usage)
    ((_, patch),) = kube.patches
    assert (patch["spentUSD"], patch["tokens"]) == ("0.000000", 0)
    assert sidecar.pushed == []
