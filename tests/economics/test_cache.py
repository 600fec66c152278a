"""The answer cache through a real sidecar, with the official SDKs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest

from tests.support.redis_server import free_port
from tests.support.sidecar import SidecarHandle, anthropic_provider_for, policy, provider_for
from tests.support.simulator import FailStream, Garbage, SimulatedLLM

MESSAGES = [{"role": "user", "content": "Summarise the plot of Hamlet"}]
CACHE = {"enabled": True, "ttlSeconds": 600}


def client(sidecar: SidecarHandle, key: str = "sk-app") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key=key, max_retries=0)


async def ask(c: openai.AsyncOpenAI, **extra: Any) -> tuple[str, str]:
    """(answer text, x-sluice-cache) of one chat call."""
    params: dict[str, Any] = {"model": "gpt-4o", "messages": MESSAGES, "temperature": 0} | extra
    raw = await c.chat.completions.with_raw_response.create(**params)
    return raw.parse().choices[0].message.content, raw.headers.get("x-sluice-cache", "-")


@pytest.fixture
async def cached(llm: SimulatedLLM, sidecar_factory) -> SidecarHandle:
    return await sidecar_factory(policy(providers=[provider_for(llm)], cache=CACHE))


async def test_repeat_is_a_hit_and_never_reaches_the_provider(
    cached: SidecarHandle, llm: SimulatedLLM
) -> None:
    async with client(cached) as c:
        first = await ask(c)
        second = await ask(c)
    assert first[1] == "miss" and second == (first[0], "hit")
    assert len(llm.requests) == 1
    status, stats = await cached.admin("GET", "/admin/cache")
    assert status == 200 and stats["hits"] == 1 and stats["misses"] == 1
    assert stats["hitRate"] == 0.5 and stats["memory"]["entries"] == 1
    assert Decimal(stats["savedUSD"]) > 0
    _, usage = await cached.admin("GET", "/admin/usage")
    assert usage["totals"]["cacheHits"] == 1 and usage["totals"]["savedUSD"] == stats["savedUSD"]
    metrics = await cached.metrics_text()
    assert 'llm_cache_requests_total{result="hit"} 1.0' in metrics


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.1},
        {"top_p": 0.5},
        {"seed": 42},
        {"max_tokens": 3},
        {"messages": [{"role": "user", "content": "Summarise the plot of Macbeth"}]},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {"response_format": {"type": "json_object"}},
        {"reasoning_effort": "low"},
        {"extra_body": {"provider_specific": True}},
        {"model": "gpt-4o-mini"},
    ],
)
async def test_any_answer_relevant_change_misses(
    cached: SidecarHandle, llm: SimulatedLLM, change: dict[str, Any]
) -> None:
    async with client(cached) as c:
        await ask(c)
        _, status = await ask(c, **change)
    assert status == "miss" and len(llm.requests) == 2


async def test_two_callers_never_see_each_others_answers(
    cached: SidecarHandle, llm: SimulatedLLM
) -> None:
    async with client(cached, "sk-tenant-a") as a, client(cached, "sk-tenant-b") as b:
        assert (await ask(a))[1] == "miss"
        assert (await ask(b))[1] == "miss"
        assert (await ask(a))[1] == "hit"
    assert len(llm.requests) == 2


async def test_bypass_headers_and_non_deterministic_calls(
    cached: SidecarHandle, llm: SimulatedLLM
) -> None:
    async with client(cached) as c:
        await ask(c)
        assert (await ask(c, extra_headers={"Cache-Control": "no-cache"}))[1] == "bypass"
        assert (await ask(c, extra_headers={"X-LLM-Cache": "bypass"}))[1] == "bypass"
        assert (await ask(c, temperature=0.9))[1] == "bypass"
        assert (await ask(c, temperature=0.9))[1] == "bypass"
    assert len(llm.requests) == 5


async def test_operation_can_enable_caching_whatever_the_temperature(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(
        policy(
            providers=[provider_for(llm)],
            cache=CACHE,
            operations={"Creative": {"cache": {"enabled": True}}},
        )
    )
    creative = {"X-LLM-Operation": "Creative"}
    async with client(sidecar) as c:
        await ask(c, temperature=1.2, extra_headers=creative)
        assert (await ask(c, temperature=1.2, extra_headers=creative))[1] == "hit"
        # Built-in Completion preset is 0.7 > ceiling: a call without temperature bypasses.
        raw = await c.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
        assert raw.headers["x-sluice-cache"] == "bypass"


async def test_stream_is_stored_when_complete_and_replayed_as_sse(
    cached: SidecarHandle, llm: SimulatedLLM
) -> None:
    async def streamed(c: openai.AsyncOpenAI, **extra: Any) -> tuple[str, list[Any], str]:
        async with c.chat.completions.with_streaming_response.create(
            model="gpt-4o", messages=MESSAGES, temperature=0, stream=True, **extra
        ) as r:
            chunks = [chunk async for chunk in await r.parse()]
            status = r.headers["x-sluice-cache"]
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        return text, chunks, status

    async with client(cached) as c:
        text, _, first = await streamed(c)
        again, chunks, second = await streamed(c)
        with_usage, usage_chunks, third = await streamed(c, stream_options={"include_usage": True})
    assert (first, second, third) == ("miss", "hit", "hit")
    assert again == text == with_usage and text.startswith("Simulated answer")
    assert all(ch.usage is None for ch in chunks), "usage chunk leaked to a client not asking"
    assert usage_chunks[-1].usage is not None
    assert len(llm.requests) == 1


async def test_anthropic_messages_are_cached(llm: SimulatedLLM, sidecar_factory) -> None:
    sidecar = await sidecar_factory(
        policy(providers=[anthropic_provider_for(llm, "claude")], cache=CACHE)
    )
    async with anthropic.AsyncAnthropic(
        base_url=sidecar.anthropic_url, api_key="k", max_retries=0
    ) as c:
        params: dict[str, Any] = {
            "model": "claude-haiku-4-5",
            "max_tokens": 50,
            "messages": MESSAGES,
            "extra_body": {"temperature": 0},  # this SDK version has no temperature argument
        }
        first = await c.messages.create(**params)
        raw = await c.messages.with_raw_response.create(**params)
        async with c.messages.stream(**params) as stream:
            streamed = await stream.get_final_message()
        async with c.messages.stream(**params) as stream:
            replayed = await stream.get_final_message()
    assert raw.headers["x-sluice-cache"] == "hit"
    assert (await raw.parse()).content[0].text == first.content[0].text
    assert replayed.content[0].text == streamed.content[0].text
    assert replayed.usage.output_tokens == streamed.usage.output_tokens
    assert len(llm.requests) == 2  # one JSON, one stream


async def test_embeddings_are_cached(cached: SidecarHandle, llm: SimulatedLLM) -> None:
    async with client(cached) as c:
        a = await c.embeddings.create(model="text-embedding-3-small", input=["x y"])
        b = await c.embeddings.create(model="text-embedding-3-small", input=["x y"])
    assert a.data[0].embedding == b.data[0].embedding and len(llm.requests) == 1


async def test_redis_cache_is_shared_by_replicas(
    llm: SimulatedLLM, sidecar_factory, redis_url: str
) -> None:
    document = policy(providers=[provider_for(llm)], cache=CACHE | {"backend": "redis"})
    one = await sidecar_factory(document, redis_url=redis_url)
    two = await sidecar_factory(document, redis_url=redis_url)
    async with client(one) as a, client(two) as b:
        text, first = await ask(a)
        assert (text, first) != (None, "hit")
        assert await ask(b) == (text, "hit")
    assert len(llm.requests) == 1
    _, stats = await two.admin("GET", "/admin/cache")
    assert stats["backend"] == "redis"


async def test_redis_down_serves_without_cache(llm: SimulatedLLM, sidecar_factory) -> None:
    document = policy(providers=[provider_for(llm)], cache=CACHE | {"backend": "redis"})
    sidecar = await sidecar_factory(document, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with client(sidecar) as c:
        assert (await ask(c))[1] == "miss"
        assert (await ask(c))[1] == "miss"
    assert len(llm.requests) == 2
    _, stats = await sidecar.admin("GET", "/admin/cache")
    assert stats["errors"] >= 3  # two reads, at least one write
    assert 'sluice_redis_errors_total{use="cache"}' in await sidecar.metrics_text()


async def test_a_stream_that_failed_mid_way_is_not_stored(
    cached: SidecarHandle, llm: SimulatedLLM
) -> None:
    llm.enqueue(FailStream(after_chunks=2))
    params: dict[str, Any] = {"model": "gpt-4o", "messages": MESSAGES, "temperature": 0}
    async with client(cached) as c:
        stream = await c.chat.completions.create(stream=True, **params)
        with pytest.raises(openai.APIError):
            async for _chunk in stream:
                pass
        raw = await c.chat.completions.with_raw_response.create(stream=True, **params)
        async for _chunk in raw.parse():
            pass
    assert raw.headers["x-sluice-cache"] == "miss"
    assert len(llm.requests) == 2


async def test_an_error_document_with_a_200_is_not_stored(
    cached: SidecarHandle, llm: SimulatedLLM
) -> None:
    error = b'{"error": {"message": "overloaded", "type": "server_error"}}'
    llm.enqueue(Garbage(status=200, body=error, content_type="application/json"))
    async with client(cached) as c:
        await c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES, temperature=0
        )
        first = await ask(c)
        second = await ask(c)
    assert first[1] == "miss" and second == (first[0], "hit")
    assert len(llm.requests) == 2
