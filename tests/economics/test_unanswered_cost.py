"""What the provider may bill for calls it never answered, kept apart from answered spend.

An attempt that reached the provider and came back with no answer (the connection dropped, the
answer was not valid, the stream broke before its first event) may still be billed: it is
counted in ``unanswered`` at its worst case (estimated prompt plus output bound, at that
provider's price) and charged to budgets, whether a retry then succeeded or the call failed. An
error the provider answered (429, 503) and a connection never made cost nothing.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import openai
import pytest

from sluice_sidecar.economics.usage import estimate_prompt_tokens
from tests.economics.conftest import budget
from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import BreakStream, Fail, Garbage, SimulatedLLM

MESSAGES = [{"role": "user", "content": "Name three canals"}]
MAX_TOKENS = 40
DOLLAR_PER_TOKEN = {"inputPer1M": 1_000_000, "outputPer1M": 1_000_000}
WORST_CASE = Decimal(estimate_prompt_tokens({"messages": MESSAGES}) + MAX_TOKENS)


async def settled(sidecar: SidecarHandle) -> tuple[Decimal, dict]:
    """The budget's spend once nothing is reserved, and the usage totals."""
    async with asyncio.timeout(5):
        while True:
            _, body = await sidecar.admin("GET", "/admin/budgets")
            row = body["budgets"][0]
            if row["reservedUSD"] == "0":
                break
    _, usage = await sidecar.admin("GET", "/admin/usage")
    return Decimal(row["spentUSD"]), usage["totals"]


async def priced_sidecar(economics_sidecar, *providers: dict, **spec: object) -> SidecarHandle:
    spec.setdefault("retry", {"maxAttempts": 2, "baseDelayMs": 1, "maxDelayMs": 1})
    return await economics_sidecar(
        policy(providers=list(providers), pricing={"m": DOLLAR_PER_TOKEN}, **spec),
        [budget(limits={"costUSD": 1000})],
    )


def client(sidecar: SidecarHandle) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="k", max_retries=0)


async def test_a_dropped_attempt_that_was_retried_is_counted_apart_and_charged(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    sidecar = await priced_sidecar(economics_sidecar, provider_for(llm))
    llm.enqueue(BreakStream())  # not streaming: the connection drops without an answer
    async with client(sidecar) as c:
        answer = await c.chat.completions.create(
            model="m", messages=MESSAGES, max_tokens=MAX_TOKENS
        )
    assert answer.usage is not None
    spent, totals = await settled(sidecar)
    assert Decimal(totals["costUSD"]) == answer.usage.total_tokens
    assert totals["unanswered"] == {
        "calls": 0,
        "cancelledCalls": 0,
        "attempts": 1,
        "possibleCostUSD": str(WORST_CASE),
    }
    assert spent == answer.usage.total_tokens + WORST_CASE
    metrics = await sidecar.metrics_text()
    assert 'llm_unanswered_attempts_total{model="m",provider="sim"} 1.0' in metrics
    assert (
        f'llm_unanswered_cost_usd_total{{model="m",provider="sim"}} {float(WORST_CASE)}' in metrics
    )


async def test_a_call_whose_every_attempt_got_no_valid_answer_is_charged_each_attempt(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    sidecar = await priced_sidecar(economics_sidecar, provider_for(llm))
    llm.enqueue(Garbage(), Garbage())
    async with client(sidecar) as c:
        with pytest.raises(openai.APIStatusError) as caught:
            await c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=MAX_TOKENS)
    assert caught.value.status_code == 502
    spent, totals = await settled(sidecar)
    assert totals["costUSD"] == "0" and totals["requests"] == 0
    assert totals["unanswered"]["calls"] == 1 and totals["unanswered"]["attempts"] == 2
    assert Decimal(totals["unanswered"]["possibleCostUSD"]) == 2 * WORST_CASE
    assert spent == 2 * WORST_CASE


async def assert_only_the_answer_is_charged(sidecar: SidecarHandle) -> None:
    async with client(sidecar) as c:
        answer = await c.chat.completions.create(
            model="m", messages=MESSAGES, max_tokens=MAX_TOKENS
        )
    assert answer.usage is not None
    spent, totals = await settled(sidecar)
    assert totals["unanswered"]["attempts"] == 0
    assert spent == answer.usage.total_tokens


async def test_errors_the_provider_answered_cost_nothing(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    sidecar = await priced_sidecar(economics_sidecar, provider_for(llm))
    llm.enqueue(Fail(503))
    await assert_only_the_answer_is_charged(sidecar)


async def test_a_provider_never_reached_costs_nothing(
    llm: SimulatedLLM, llm_factory, economics_sidecar
) -> None:
    gone = await llm_factory(name="gone")
    await gone.close()  # its port now refuses connections
    sidecar = await priced_sidecar(economics_sidecar, provider_for(gone), provider_for(llm))
    await assert_only_the_answer_is_charged(sidecar)


async def test_unanswered_spend_is_priced_at_the_provider_that_lost_it(
    llm_factory, economics_sidecar
) -> None:
    dear = await llm_factory(name="dear")
    cheap = await llm_factory(name="cheap")
    dear.enqueue(BreakStream(), BreakStream())
    sidecar = await economics_sidecar(
        policy(
            providers=[provider_for(dear), provider_for(cheap)],
            pricing={
                "dear/m": {"inputPer1M": 2_000_000, "outputPer1M": 2_000_000},
                "cheap/m": {"inputPer1M": 0, "outputPer1M": 0},
            },
            retry={"maxAttempts": 2, "baseDelayMs": 1, "maxDelayMs": 1},
        ),
        [budget(limits={"costUSD": 1000})],
    )
    async with client(sidecar) as c:
        await c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=MAX_TOKENS)
    spent, totals = await settled(sidecar)
    assert totals["unanswered"]["attempts"] == 2
    assert spent == Decimal(totals["unanswered"]["possibleCostUSD"]) == 4 * WORST_CASE
    _, usage = await sidecar.admin("GET", "/admin/usage")
    dear_row = next(r for r in usage["series"] if r["provider"] == "dear")
    assert dear_row["unanswered"]["attempts"] == 2 and dear_row["requests"] == 0
