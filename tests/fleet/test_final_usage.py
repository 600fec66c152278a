"""A stopping sidecar POSTs its final usage to the operator (``SLUICE_USAGE_REPORT_URL``).

A real sidecar in front of the simulated provider; the "operator" is an aiohttp server on
loopback that keeps what it is sent. The body must read back as the contract's ``FinalUsage``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sluice_sidecar.contract import LlmPolicy, compile_policies
from sluice_sidecar.contract.model import LlmBudget
from sluice_sidecar.contract.usage import FinalUsage
from tests.support.sidecar import (
    ADMIN_TOKEN,
    close_test_sidecar,
    policy,
    provider_for,
    start_test_sidecar,
)
from tests.support.simulator import SimulatedLLM

# $1 per token: the report's spend is the call's token count in dollars.
DOLLAR_PER_TOKEN = {"m": {"inputPer1M": 1_000_000, "outputPer1M": 1_000_000}}
BUDGET = {
    "apiVersion": "sluice.dev/v1alpha1",
    "kind": "LlmBudget",
    "metadata": {"name": "team", "namespace": "tests"},
    "spec": {"limits": {"costUSD": 100}},
}


class Operator:
    """The operator's ``/usage`` endpoint, answering ``status`` and keeping what it got."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[tuple[str | None, bytes]] = []
        app = web.Application()
        app.router.add_post("/usage", self._receive)
        self.server = TestServer(app, host="127.0.0.1")

    async def _receive(self, request: web.Request) -> web.Response:
        self.received.append((request.headers.get("Authorization"), await request.read()))
        return web.json_response({"budgets": 1}, status=self.status)

    @property
    def url(self) -> str:
        return str(self.server.make_url("/usage"))


@pytest.fixture
async def operator() -> AsyncIterator[Operator]:
    got = Operator()
    await got.server.start_server()
    yield got
    await got.server.close()


async def test_the_final_report_carries_this_pods_spend_per_budget(
    llm: SimulatedLLM, operator: Operator
) -> None:
    document = policy(providers=[provider_for(llm)], pricing=DOLLAR_PER_TOKEN)
    config = compile_policies(
        [LlmPolicy.model_validate(document)], [LlmBudget.model_validate(BUDGET)]
    )
    sidecar = await start_test_sidecar(
        config, usage_report_url=operator.url, pod_uid="uid-a", namespace="tests"
    )
    async with openai.AsyncOpenAI(
        base_url=sidecar.openai_url, api_key="sk-app", max_retries=0
    ) as client:
        answer = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=10
        )
    await close_test_sidecar(sidecar)

    ((authorization, body),) = operator.received
    assert authorization == f"Bearer {ADMIN_TOKEN}"
    wire: dict[str, Any] = orjson.loads(body)
    assert (wire["podUID"], wire["namespace"]) == ("uid-a", "tests")
    (row,) = wire["budgets"]
    assert row["budget"] == "tests/team"
    assert {"periodStart", "spentUSD", "tokens", "state", "limits"} <= row.keys()
    report = FinalUsage.model_validate_json(body)
    assert report.budgets[0].spent_usd == Decimal(answer.usage.total_tokens)
    assert report.budgets[0].tokens == answer.usage.total_tokens


async def test_before_any_configuration_the_report_names_the_injected_workload(
    operator: Operator,
) -> None:
    sidecar = await start_test_sidecar(
        None, usage_report_url=operator.url, pod_uid="uid-b", namespace="tests", workload="studio"
    )
    await close_test_sidecar(sidecar)
    ((_, body),) = operator.received
    report = FinalUsage.model_validate_json(body)
    assert (report.pod_uid, report.workload, report.budgets) == ("uid-b", "studio", [])
