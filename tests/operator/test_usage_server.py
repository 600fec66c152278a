"""The operator's ``POST /usage``: a stopping sidecar's final report, validated as a FinalUsage.

A real aiohttp server on loopback in front of the real aggregator; only the Kubernetes reads and
writes are the in-memory fake's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sluice_operator.aggregator import BudgetAggregator
from sluice_operator.pusher import Pusher
from sluice_operator.settings import OperatorSettings
from sluice_operator.usage_server import build_usage_app
from tests.operator.fake_kube import NAMESPACE, budget
from tests.operator.writable_kube import TOKEN, WritableKube

NOW = dt.datetime(2026, 12, 15, 12, tzinfo=dt.UTC)
PERIOD = "2026-12-01T00:00:00+00:00"
STUDIO = {"matchLabels": {"app": "studio"}}
IDENTITY = f"{NAMESPACE}/monthly"


@pytest.fixture
def kube() -> WritableKube:
    spec = {"selector": STUDIO, "limits": {"costUSD": 10}}
    return WritableKube(budgets_=[budget("monthly", spec)])


@pytest.fixture
async def client(kube: WritableKube) -> AsyncIterator[TestClient[Any, Any]]:
    settings = OperatorSettings()
    aggregator = BudgetAggregator(kube, Pusher(settings), settings, clock=lambda: NOW)  # type: ignore[arg-type]
    async with TestClient(TestServer(build_usage_app(kube, aggregator, settings))) as client:  # type: ignore[arg-type]
        yield client


def report(**row: Any) -> dict[str, Any]:
    spend = {"budget": IDENTITY, "periodStart": PERIOD, "spentUSD": "2.5", "tokens": 3, **row}
    return {"podUID": "uid-a", "namespace": NAMESPACE, "workload": "studio", "budgets": [spend]}


async def post(client: TestClient[Any, Any], body: Any) -> tuple[int, Any]:
    answer = await client.post("/usage", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    return answer.status, await answer.json()


async def test_a_final_report_is_folded_into_its_budget(
    client: TestClient[Any, Any], kube: WritableKube
) -> None:
    status, body = await post(client, report())
    assert (status, body) == (200, {"budgets": 1})
    ((name, patch),) = kube.patches
    assert (name, patch["spentUSD"], patch["tokens"]) == ("monthly", "2.500000", 3)


@pytest.mark.parametrize(
    "row",
    [{"spentUSD": "NaN"}, {"spentUSD": "-1"}, {"spentUSD": "1e400"}, {"tokens": -5}, {"budget": 7}],
)
async def test_a_report_with_an_impossible_row_is_refused_whole(
    client: TestClient[Any, Any], kube: WritableKube, row: dict[str, Any]
) -> None:
    status, body = await post(client, report(**row))
    assert status == 400
    assert body["error"] == "body must be a usage report"
    assert any(problem.startswith("budgets.0.") for problem in body["problems"])
    assert kube.patches == []


@pytest.mark.parametrize("body", [[], {"podUID": "uid-a"}, {"namespace": ["x"]}])
async def test_a_body_that_is_not_a_report_is_a_400(
    client: TestClient[Any, Any], kube: WritableKube, body: Any
) -> None:
    status, answer = await post(client, body)
    assert status == 400
    assert answer["problems"]
    assert kube.patches == []
