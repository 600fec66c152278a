"""Keys remembered for repeated requests (``KeyMemo``) never outlive what they were made of.

The cache stage keys a request it has seen before by its exact bytes and context instead of
canonicalising it again; a new configuration (tenant, providers, presets), other credentials or
other variant headers must still give another key.
"""

from __future__ import annotations

from typing import Any

import openai

from tests.support.sidecar import SidecarHandle, compile_policy, policy, provider_for
from tests.support.simulator import SimulatedLLM

MESSAGES = [{"role": "user", "content": "Summarise the plot of Hamlet"}]
CACHE = {"enabled": True, "ttlSeconds": 600}


async def cache_status(sidecar: SidecarHandle, key: str = "sk-app", **headers: str) -> str:
    async with openai.AsyncOpenAI(
        base_url=sidecar.openai_url, api_key=key, max_retries=0, default_headers=headers
    ) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES, temperature=0
        )
    return raw.headers["x-sluice-cache"]


def cached_policy(*providers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return policy(providers=list(providers), cache=CACHE, **spec)


async def test_a_new_configuration_keys_a_repeated_request_again(
    llm: SimulatedLLM, llm_factory, sidecar_factory
) -> None:
    other = await llm_factory(name="other")
    sidecar = await sidecar_factory(cached_policy(provider_for(llm)))
    assert [await cache_status(sidecar) for _ in range(2)] == ["miss", "hit"]
    # Another provider first: the same bytes are another request now.
    sidecar.state.apply(
        compile_policy(cached_policy(provider_for(other), provider_for(llm))), source="test"
    )
    assert [await cache_status(sidecar) for _ in range(2)] == ["miss", "hit"]
    assert len(other.requests) == 1


async def test_a_preset_change_keys_a_repeated_request_again(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    def with_preset(max_tokens: int) -> dict[str, Any]:
        preset = {"temperature": 0, "maxTokens": max_tokens}
        return cached_policy(provider_for(llm), operations={"Completion": {"preset": preset}})

    sidecar = await sidecar_factory(with_preset(50))
    assert [await cache_status(sidecar) for _ in range(2)] == ["miss", "hit"]
    sidecar.state.apply(compile_policy(with_preset(60)), source="test")
    assert await cache_status(sidecar) == "miss"


async def test_the_same_bytes_with_other_credentials_or_variant_headers_miss(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(cached_policy(provider_for(llm)))
    assert [await cache_status(sidecar) for _ in range(2)] == ["miss", "hit"]
    assert await cache_status(sidecar, key="sk-other") == "miss"
    assert await cache_status(sidecar, **{"OpenAI-Beta": "assistants=v2"}) == "miss"
    assert await cache_status(sidecar) == "hit"
    assert len(llm.requests) == 3
