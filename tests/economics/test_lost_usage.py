"""Spend the provider may bill is charged even when its usage never arrives.

A call abandoned by its caller or cut by its deadline after it was sent upstream settles at its
reservation; a stream cut before its final usage is charged its output bound.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import anthropic
import openai
import pytest

from sluice_sidecar.economics.usage import estimate_prompt_tokens
from tests.economics.conftest import budget
from tests.support.sidecar import SidecarHandle, anthropic_provider_for, policy, provider_for
from tests.support.simulator import BreakStream, Hang, SimulatedLLM
from tests.support.waiting import wait_until

MESSAGES = [{"role": "user", "content": "Name three rivers"}]
MAX_TOKENS = 50
# $1 per token: a call's cost in dollars is its token count.
DOLLAR_PER_TOKEN = {"inputPer1M": 1_000_000, "outputPer1M": 1_000_000}
# What the metering stage reserves for one such call: estimated prompt plus the output bound.
RESERVATION = Decimal(estimate_prompt_tokens({"messages": MESSAGES}) + MAX_TOKENS)


async def settled_spend(sidecar: SidecarHandle) -> Decimal:
    """The budget's spend once no reservation is held any more."""
    async with asyncio.timeout(5):
        while True:
            _, body = await sidecar.admin("GET", "/admin/budgets")
            row = body["budgets"][0]
            if row["reservedUSD"] == "0":
                return Decimal(row["spentUSD"])


async def usage_totals(sidecar: SidecarHandle) -> dict:
    _, body = await sidecar.admin("GET", "/admin/usage")
    return body["totals"]


async def openai_sidecar(llm: SimulatedLLM, economics_sidecar, **spec: object) -> SidecarHandle:
    return await economics_sidecar(
        policy(providers=[provider_for(llm)], pricing={"m": DOLLAR_PER_TOKEN}, **spec),
        [budget(limits={"costUSD": 1000})],
    )


async def test_a_call_its_caller_abandons_is_charged_its_reservation(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    sidecar = await openai_sidecar(llm, economics_sidecar)
    llm.enqueue(Hang())
    async with openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="k", max_retries=0) as c:
        call = asyncio.create_task(
            c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=MAX_TOKENS)
        )
        await wait_until(lambda: llm.in_flight == 1)  # it reached the provider
        call.cancel()  # the caller goes away
        with pytest.raises(asyncio.CancelledError):
            await call
        await llm.disconnected.wait()
    assert await settled_spend(sidecar) == RESERVATION
    totals = await usage_totals(sidecar)
    # Kept apart from answered spend: what the provider may bill for a call it never answered.
    assert totals["requests"] == 0 and totals["costUSD"] == "0"
    assert totals["unanswered"]["cancelledCalls"] == 1
    assert Decimal(totals["unanswered"]["possibleCostUSD"]) == RESERVATION
    metrics = await sidecar.metrics_text()
    assert 'llm_usage_estimated_total{model="m",provider="sim",reason="cancelled"} 1.0' in metrics


async def test_a_call_past_its_deadline_is_charged_its_reservation(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    sidecar = await openai_sidecar(llm, economics_sidecar, defaults={"timeoutSeconds": 0.3})
    llm.enqueue(Hang())
    async with openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="k", max_retries=0) as c:
        with pytest.raises(openai.APIStatusError) as caught:
            await c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=MAX_TOKENS)
    assert caught.value.status_code == 504
    assert await settled_spend(sidecar) == RESERVATION


async def test_a_call_that_never_left_the_sidecar_costs_nothing(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    sidecar = await openai_sidecar(llm, economics_sidecar, queue={"maxConcurrent": 1})
    llm.enqueue(Hang())
    async with openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="k", max_retries=0) as c:
        hanging = asyncio.create_task(
            c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=MAX_TOKENS)
        )
        await wait_until(lambda: llm.in_flight == 1)
        queued = asyncio.create_task(
            c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=MAX_TOKENS)
        )
        await wait_until(lambda: sidecar.state.queue.depth == 1)
        queued.cancel()  # left while waiting for a slot: nothing was sent for it
        hanging.cancel()
        await asyncio.gather(hanging, queued, return_exceptions=True)
    assert await settled_spend(sidecar) == RESERVATION  # the one that reached the provider


async def test_a_cut_anthropic_stream_is_charged_its_output_bound(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    sidecar = await economics_sidecar(
        policy(
            providers=[anthropic_provider_for(llm, "claude")],
            pricing={"claude-x": DOLLAR_PER_TOKEN},
        ),
        [budget(limits={"costUSD": 1000})],
    )
    llm.enqueue(BreakStream(after_chunks=2))
    reported_input = 0
    async with anthropic.AsyncAnthropic(
        base_url=sidecar.anthropic_url, api_key="k", max_retries=0
    ) as c:
        with pytest.raises(anthropic.APIError):
            stream = await c.messages.create(
                model="claude-x", max_tokens=MAX_TOKENS, messages=MESSAGES, stream=True
            )
            async for event in stream:
                if event.type == "message_start":
                    reported_input = event.message.usage.input_tokens
    assert reported_input > 0
    assert await settled_spend(sidecar) == reported_input + MAX_TOKENS
    totals = await usage_totals(sidecar)
    assert totals["estimatedUsageCalls"] == 1
    assert totals["outputTokens"] == MAX_TOKENS


async def test_a_caller_that_leaves_a_merged_batch_is_charged_its_share(
    llm_factory, economics_sidecar
) -> None:
    slow: SimulatedLLM = await llm_factory(name="slow", latency_s=0.3)
    sidecar = await economics_sidecar(
        policy(
            providers=[provider_for(slow)],
            pricing={"e": DOLLAR_PER_TOKEN},
            batching={"embeddings": {"enabled": True, "maxBatchSize": 4, "maxWaitMs": 200}},
        ),
        [budget(limits={"costUSD": 1000})],
    )
    async with openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="k", max_retries=0) as c:
        calls = [
            asyncio.create_task(c.embeddings.create(model="e", input=f"text {i}")) for i in range(4)
        ]
        await wait_until(lambda: slow.in_flight == 1)  # the merged call is out
        calls[0].cancel()
        answers = await asyncio.gather(*calls[1:])
    reported = sum(a.usage.prompt_tokens for a in answers)
    reservation = estimate_prompt_tokens({"input": "text 0"})
    assert await settled_spend(sidecar) == reported + reservation
