"""``PUT /admin/budgets/external``: the operator's report of other replicas' spend, validated."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.economics.conftest import budget
from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import SimulatedLLM

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def budgeted(llm: SimulatedLLM, economics_sidecar) -> SidecarHandle:
    return await economics_sidecar(
        policy(providers=[provider_for(llm)]), [budget(limits={"costUSD": 100})]
    )


async def current_row(sidecar: SidecarHandle) -> dict[str, Any]:
    _, body = await sidecar.admin("GET", "/admin/budgets")
    return body["budgets"][0]


def report(row: dict[str, Any], **fields: Any) -> dict[str, Any]:
    spend = {"budget": row["budget"], "periodStart": row["periodStart"], "spentUSD": "1"}
    return {"budgets": [spend | fields]}


async def test_a_valid_report_is_applied(budgeted: SidecarHandle) -> None:
    row = await current_row(budgeted)
    status, body = await budgeted.admin(
        "PUT", "/admin/budgets/external", json=report(row, spentUSD="2.5", tokens=10)
    )
    assert (status, body) == (200, {"applied": 1})
    assert (await current_row(budgeted))["externalUSD"] == "2.5"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"spentUSD": "NaN"}, "budgets.0.spentUSD"),
        ({"spentUSD": "Infinity"}, "budgets.0.spentUSD"),
        ({"spentUSD": "-5"}, "budgets.0.spentUSD"),
        ({"spentUSD": "1e999999999"}, "budgets.0.spentUSD"),
        ({"spentUSD": "0." + "1" * 5000}, "budgets.0.spentUSD"),
        ({"tokens": 1e300}, "budgets.0.tokens"),
        ({"tokens": -1}, "budgets.0.tokens"),
        ({"budget": ["x"]}, "budgets.0.budget"),
    ],
)
async def test_a_spend_that_is_not_a_finite_bounded_amount_is_refused_and_calls_go_on(
    budgeted: SidecarHandle, fields: dict[str, Any], problem: str
) -> None:
    row = await current_row(budgeted)
    status, body = await budgeted.admin(
        "PUT", "/admin/budgets/external", json=report(row, **fields)
    )
    assert status == 400 and body["problems"][0].startswith(problem + ": ")
    assert (await current_row(budgeted))["externalUSD"] == "0"
    async with openai.AsyncOpenAI(base_url=budgeted.openai_url, api_key="k", max_retries=0) as c:
        await c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=5)


@pytest.mark.parametrize("body", [b'{"budgets": [1]}', b"[]", b'{"budgets": {}}', b"\xff"])
async def test_a_report_that_is_not_a_list_of_rows_is_400(
    budgeted: SidecarHandle, body: bytes
) -> None:
    status, answer = await budgeted.admin("PUT", "/admin/budgets/external", data=body)
    assert status == 400 and answer["error"] == "invalid body" and answer["problems"]


async def test_reports_are_ignored_when_redis_shares_the_counters(
    llm: SimulatedLLM, economics_sidecar, redis_url: str
) -> None:
    sidecar = await economics_sidecar(
        policy(providers=[provider_for(llm)]),
        [budget(limits={"costUSD": 100})],
        redis_url=redis_url,
    )
    row = await current_row(sidecar)
    status, body = await sidecar.admin("PUT", "/admin/budgets/external", json=report(row))
    assert (status, body) == (200, {"applied": 0})
    assert (await current_row(sidecar))["externalUSD"] == "0"
