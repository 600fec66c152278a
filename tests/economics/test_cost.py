"""Cost tracking through a real sidecar: usage from answers and streams, prices, /admin/usage."""

from __future__ import annotations

from decimal import Decimal

import anthropic
import openai

from tests.support.sidecar import SidecarHandle, anthropic_provider_for, policy, provider_for
from tests.support.simulator import SimulatedLLM

MESSAGES = [{"role": "user", "content": "Write a haiku about sluice gates"}]
MILLION = Decimal(1_000_000)


def client(sidecar: SidecarHandle) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-app", max_retries=0)


async def usage(sidecar: SidecarHandle) -> dict:
    status, body = await sidecar.admin("GET", "/admin/usage")
    assert status == 200
    return body


async def test_chat_cost_is_priced_from_the_bundled_table(sidecar: SidecarHandle) -> None:
    async with client(sidecar) as c:
        answer = await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert answer.usage is not None
    expected = (
        Decimal(answer.usage.prompt_tokens) * Decimal("2.50")
        + Decimal(answer.usage.completion_tokens) * Decimal("10.00")
    ) / MILLION
    report = await usage(sidecar)
    assert report["bootId"] and report["workload"] == "default/standalone"
    assert Decimal(report["totals"]["costUSD"]) == expected
    assert report["totals"]["inputTokens"] == answer.usage.prompt_tokens
    [row] = report["series"]
    assert (row["provider"], row["model"], row["operation"]) == ("sim", "gpt-4o", "Completion")
    metrics = await sidecar.metrics_text()
    assert (
        f'llm_tokens_used_total{{kind="output",model="gpt-4o",operation="Completion",provider="sim"}}'
        f" {float(answer.usage.completion_tokens)}" in metrics
    )
    assert (
        'llm_token_costs_usd_total{model="gpt-4o",operation="Completion",provider="sim"}' in metrics
    )


async def test_stream_usage_is_requested_and_hidden_from_the_client(
    sidecar: SidecarHandle, llm: SimulatedLLM
) -> None:
    async with client(sidecar) as c:
        stream = await c.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        chunks = [chunk async for chunk in stream]
    assert llm.requests[-1].json["stream_options"] == {"include_usage": True}
    assert all(chunk.choices for chunk in chunks), "the usage-only chunk reached the client"
    assert all(chunk.usage is None for chunk in chunks)
    totals = (await usage(sidecar))["totals"]
    assert totals["outputTokens"] > 0 and Decimal(totals["costUSD"]) > 0
    assert totals["unknownUsageCalls"] == 0


async def test_stream_usage_stays_when_the_client_asked(sidecar: SidecarHandle) -> None:
    async with client(sidecar) as c:
        stream = await c.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None
    totals = (await usage(sidecar))["totals"]
    assert totals["outputTokens"] == chunks[-1].usage.completion_tokens


async def test_anthropic_stream_usage_from_message_events(llm: SimulatedLLM, sidecar_factory):
    sidecar = await sidecar_factory(policy(providers=[anthropic_provider_for(llm, "claude")]))
    async with (
        anthropic.AsyncAnthropic(
            base_url=sidecar.anthropic_url, api_key="sk-ant", max_retries=0
        ) as c,
        c.messages.stream(model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES) as stream,
    ):
        final = await stream.get_final_message()
    totals = (await usage(sidecar))["totals"]
    assert totals["inputTokens"] == final.usage.input_tokens
    assert totals["outputTokens"] == final.usage.output_tokens
    expected = (
        Decimal(final.usage.input_tokens) * 1 + Decimal(final.usage.output_tokens) * 5
    ) / MILLION
    assert Decimal(totals["costUSD"]) == expected


async def test_unpriced_model_is_reported_not_zero(sidecar: SidecarHandle, caplog) -> None:
    async with client(sidecar) as c:
        await c.chat.completions.create(model="my-finetune", messages=MESSAGES)
    totals = (await usage(sidecar))["totals"]
    assert totals["unpricedCalls"] == 1 and totals["costUSD"] == "0"
    assert 'llm_unpriced_model_total{model="my-finetune",provider="sim"} 1.0' in (
        await sidecar.metrics_text()
    )
    assert "my-finetune (provider sim) has no price" in caplog.text


async def test_policy_pricing_overrides_the_table(llm: SimulatedLLM, sidecar_factory) -> None:
    sidecar = await sidecar_factory(
        policy(
            providers=[provider_for(llm)],
            pricing={"my-finetune": {"inputPer1M": "1000000", "outputPer1M": 0}},
        )
    )
    async with client(sidecar) as c:
        answer = await c.chat.completions.create(model="my-finetune", messages=MESSAGES)
    totals = (await usage(sidecar))["totals"]
    assert Decimal(totals["costUSD"]) == answer.usage.prompt_tokens  # $1 per input token


async def test_legacy_completion_streams_and_embeddings_are_metered(
    sidecar: SidecarHandle, llm: SimulatedLLM
) -> None:
    async with client(sidecar) as c:
        stream = await c.completions.create(model="gpt-4o", prompt="Hi", stream=True)
        [chunk async for chunk in stream]
        await c.embeddings.create(model="text-embedding-3-small", input=["a b c"])
    totals = (await usage(sidecar))["totals"]
    assert totals["requests"] == 2 and totals["unknownUsageCalls"] == 0
    assert llm.requests[0].json["stream_options"] == {"include_usage": True}
