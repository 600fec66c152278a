"""Scripted behaviours: each failure reaches the SDKs as the exception a real provider causes."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import anthropic
import httpx2
import openai
import pytest

from tests.simulator.common import ANSWER, USER, AnthropicFactory, OpenAIFactory
from tests.support.simulator import (
    BreakStream,
    Delay,
    Fail,
    FailStream,
    Garbage,
    Hang,
    Respond,
    SimulatedLLM,
)


async def test_openai_rate_limit_carries_retry_after(llm: SimulatedLLM, oai: OpenAIFactory) -> None:
    llm.enqueue(Fail(429, retry_after=2))
    with pytest.raises(openai.RateLimitError) as err:
        await oai(llm, max_retries=0).chat.completions.create(model="gpt-4o", messages=USER)
    assert err.value.response.headers["retry-after"] == "2"
    assert err.value.response.headers["x-ratelimit-reset-requests"] == "2s"
    assert err.value.code == "rate_limit_exceeded"
    assert err.value.type == "rate_limit_exceeded"
    assert err.value.response.headers["x-sim-name"] == "sim"


@pytest.mark.parametrize(
    ("status", "exc", "kind"),
    [
        (400, openai.BadRequestError, "invalid_request_error"),
        (401, openai.AuthenticationError, "authentication_error"),
        (500, openai.InternalServerError, "server_error"),
        (503, openai.InternalServerError, "server_error"),
    ],
)
async def test_openai_error_types(
    llm: SimulatedLLM, status: int, exc: type, kind: str, oai: OpenAIFactory
) -> None:
    llm.enqueue(Fail(status, message="boom", headers={"x-extra": "1"}))
    with pytest.raises(exc) as err:
        await oai(llm, max_retries=0).embeddings.create(model="e", input="x")
    assert err.value.status_code == status
    assert err.value.type == kind
    assert err.value.message.endswith("boom")
    assert err.value.response.headers["x-extra"] == "1"


@pytest.mark.parametrize(
    ("status", "exc", "kind"),
    [
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
    ],
)
async def test_anthropic_error_types(
    llm: SimulatedLLM, status: int, exc: type, kind: str, ant: AnthropicFactory
) -> None:
    llm.enqueue(Fail(status, retry_after=0.5))
    with pytest.raises(exc) as err:
        await ant(llm, max_retries=0).messages.create(model="c", max_tokens=5, messages=USER)
    assert err.value.body["type"] == "error"
    assert err.value.body["error"]["type"] == kind
    assert err.value.response.headers["retry-after"] == "0.5"
    if status == 429:
        assert err.value.response.headers["anthropic-ratelimit-requests-reset"].endswith("Z")


async def test_sdk_retries_through_scripted_failures(llm: SimulatedLLM, oai: OpenAIFactory) -> None:
    llm.enqueue(Fail(429, retry_after=0.01), Fail(503, retry_after=0.01), Respond(content="ok"))
    reply = await oai(llm, max_retries=2).chat.completions.create(model="gpt-4o", messages=USER)
    assert reply.choices[0].message.content == "ok"
    assert len(llm.requests) == 3


async def test_garbage_body(llm: SimulatedLLM, oai: OpenAIFactory) -> None:
    llm.enqueue(Garbage(status=502))
    with pytest.raises(openai.InternalServerError) as err:
        await oai(llm, max_retries=0).chat.completions.create(model="gpt-4o", messages=USER)
    assert err.value.response.text == "<html>oops"
    assert err.value.response.headers["content-type"].startswith("text/html")


async def test_break_stream_makes_sdk_streams_raise(
    llm: SimulatedLLM, oai: OpenAIFactory, ant: AnthropicFactory
) -> None:
    llm.enqueue(BreakStream(after_chunks=2), BreakStream(after_chunks=1))
    stream = await oai(llm, max_retries=0).chat.completions.create(
        model="gpt-4o", messages=USER, stream=True
    )
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert received == ["", "Simulated answer from", " sim to: Tell"]
    events = await ant(llm, max_retries=0).messages.create(
        model="c", max_tokens=50, messages=USER, stream=True
    )
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        async for _ in events:
            pass
    assert llm.disconnects == 0  # the server dropped these, the clients did not go away


async def test_fail_stream_sends_an_error_event_mid_stream(
    llm: SimulatedLLM, oai: OpenAIFactory, ant: AnthropicFactory
) -> None:
    llm.enqueue(FailStream(after_chunks=1, status=500, message="mid-stream"), FailStream(2, 529))
    stream = await oai(llm, max_retries=0).chat.completions.create(
        model="gpt-4o", messages=USER, stream=True
    )
    received: list[str] = []
    with pytest.raises(openai.APIError, match="mid-stream"):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert received == ["", "Simulated answer from"]
    events = await ant(llm, max_retries=0).messages.create(
        model="c", max_tokens=50, messages=USER, stream=True
    )
    kinds: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async for event in events:
            kinds.append(event.type)
    assert caught.value.body["error"]["type"] == "overloaded_error"
    assert kinds.count("content_block_delta") == 2
    llm.enqueue(FailStream(status=429))
    with pytest.raises(openai.RateLimitError):
        await oai(llm, max_retries=0).chat.completions.create(model="gpt-4o", messages=USER)


async def test_break_stream_without_stream_drops_the_connection(
    llm: SimulatedLLM, oai: OpenAIFactory
) -> None:
    llm.enqueue(BreakStream())
    with pytest.raises(openai.APIConnectionError):
        await oai(llm, max_retries=0).chat.completions.create(model="gpt-4o", messages=USER)


async def test_hang_until_client_timeout_counts_a_disconnect(
    llm: SimulatedLLM, oai: OpenAIFactory
) -> None:
    llm.enqueue(Hang())
    client = oai(llm, max_retries=0, timeout=0.2)
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="gpt-4o", messages=USER)
    await asyncio.wait_for(llm.disconnected.wait(), 5)
    assert llm.disconnects == 1
    assert llm.in_flight == 0


async def test_client_leaving_mid_stream_counts_a_disconnect(
    llm_factory, oai: OpenAIFactory
) -> None:
    sim = await llm_factory(stream_chunk_delay_s=30)
    stream = await oai(sim).chat.completions.create(model="gpt-4o", messages=USER, stream=True)
    first = await stream.__anext__()
    assert first.choices[0].delta.role == "assistant"
    assert sim.in_flight == 1
    await stream.close()
    await asyncio.wait_for(sim.disconnected.wait(), 5)
    assert sim.disconnects == 1


async def test_delay_and_respond_are_consumed_in_order(
    llm: SimulatedLLM, oai: OpenAIFactory
) -> None:
    llm.enqueue(Delay(0.05), Respond(content="scripted words here"))
    client = oai(llm)
    first = await client.embeddings.create(model="e", input="x")
    second = await client.chat.completions.create(model="gpt-4o", messages=USER)
    third = await client.chat.completions.create(model="gpt-4o", messages=USER)
    assert first.data
    assert second.choices[0].message.content == "scripted words here"
    assert second.usage is not None and second.usage.completion_tokens == 3
    assert third.choices[0].message.content == ANSWER


async def test_error_rate_is_seeded(llm_factory) -> None:
    sim = await llm_factory(error_rate=1.0, seed=1)
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(20):
            body = json.dumps({"model": "m", "messages": USER})
            async with session.post(sim.openai_base_url + "/chat/completions", data=body) as r:
                statuses.append(r.status)
                if r.status == 429:
                    assert r.headers["retry-after"] == "0.05"
    assert set(statuses) == {429, 503}
