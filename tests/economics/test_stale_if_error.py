"""Stale-if-error: when every provider fails, an operation that opts in is answered from its
cache entry kept past its TTL (bounded), marked in the headers; never across tenants or keys."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.support.sidecar import SidecarHandle, anthropic_provider_for, policy, provider_for
from tests.support.simulator import Fail, SimulatedLLM

MESSAGES = [{"role": "user", "content": "Summarise the storyboard"}]
TTL, STALE = 60, 300
OPERATIONS = {"Completion": {"cache": {"enabled": True, "staleIfErrorSeconds": STALE}}}
DOWN = [Fail(503)] * 8  # every attempt of a call (two providers, retries) fails


def stale_policy(*providers: dict, operations: dict = OPERATIONS) -> dict:
    return policy(
        providers=list(providers),
        cache={"enabled": True, "ttlSeconds": TTL},
        operations=operations,
        retry={"maxAttempts": 2, "baseDelayMs": 1, "maxDelayMs": 1},
    )


def client(sidecar: SidecarHandle, key: str = "sk-app") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key=key, max_retries=0)


async def ask(sidecar: SidecarHandle, key: str = "sk-app") -> Any:
    async with client(sidecar, key) as c:
        return await c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES, temperature=0.9
        )


async def test_every_provider_failing_is_answered_from_the_stale_entry(
    llm_factory, sidecar_factory
) -> None:
    primary, fallback = await llm_factory(name="a"), await llm_factory(name="b")
    sidecar = await sidecar_factory(stale_policy(provider_for(primary), provider_for(fallback)))
    fresh = await ask(sidecar)
    assert fresh.headers["x-sluice-cache"] == "miss"
    sidecar.clock.advance(TTL + 100)  # past its TTL: no longer a hit
    primary.enqueue(*DOWN)
    fallback.enqueue(*DOWN)
    stale = await ask(sidecar)
    assert stale.headers["x-sluice-cache"] == "stale"
    assert stale.headers["x-sluice-stale-age-s"] == str(TTL + 100)
    assert stale.parse().choices[0].message.content == fresh.parse().choices[0].message.content
    assert len(primary.requests) == 3 and len(fallback.requests) == 2  # every provider was tried
    _, stats = await sidecar.admin("GET", "/admin/cache")
    assert stats["staleServed"] == 1
    _, usage = await sidecar.admin("GET", "/admin/usage")
    assert usage["totals"]["cacheHits"] == 1  # it cost nothing
    assert 'llm_cache_requests_total{result="stale"} 1.0' in await sidecar.metrics_text()


async def test_past_ttl_a_working_provider_answers_afresh(llm: SimulatedLLM, sidecar_factory):
    sidecar = await sidecar_factory(stale_policy(provider_for(llm)))
    await ask(sidecar)
    sidecar.clock.advance(TTL + 1)
    again = await ask(sidecar)
    assert again.headers["x-sluice-cache"] == "miss" and len(llm.requests) == 2


@pytest.mark.parametrize(
    ("operations", "age"),
    [
        (OPERATIONS, TTL + STALE + 1),  # older than the bound
        ({"Completion": {"cache": {"enabled": True}}}, TTL + 1),  # did not opt in
    ],
    ids=["past-the-bound", "not-opted-in"],
)
async def test_the_error_is_answered_without_a_stale_entry_to_serve(
    llm: SimulatedLLM, sidecar_factory, operations: dict, age: int
) -> None:
    sidecar = await sidecar_factory(stale_policy(provider_for(llm), operations=operations))
    await ask(sidecar)
    sidecar.clock.advance(age)
    llm.enqueue(*DOWN)
    with pytest.raises(openai.APIStatusError) as caught:
        await ask(sidecar)
    assert caught.value.status_code == 503


async def test_a_stale_answer_never_crosses_callers_keys(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(stale_policy(provider_for(llm)))
    await ask(sidecar, key="sk-tenant-a")
    sidecar.clock.advance(TTL + 1)
    llm.enqueue(*DOWN)
    with pytest.raises(openai.APIStatusError):
        await ask(sidecar, key="sk-tenant-b")
    stale = await ask(sidecar, key="sk-tenant-a")
    assert stale.headers["x-sluice-cache"] == "stale"


async def test_anthropic_callers_get_the_stale_answer_in_their_format(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(stale_policy(anthropic_provider_for(llm, "claude")))
    async with anthropic.AsyncAnthropic(
        base_url=sidecar.anthropic_url, api_key="k", max_retries=0
    ) as c:
        first = await c.messages.create(model="claude-3-haiku", max_tokens=50, messages=MESSAGES)
        sidecar.clock.advance(TTL + 5)
        llm.enqueue(*DOWN)
        raw = await c.messages.with_raw_response.create(
            model="claude-3-haiku", max_tokens=50, messages=MESSAGES
        )
    assert raw.headers["x-sluice-cache"] == "stale"
    answer = await raw.parse()
    assert answer.content[0].text == first.content[0].text  # type: ignore[union-attr]
