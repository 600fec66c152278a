"""The simulated upstream speaks OpenAI and Anthropic well enough for the official SDKs.

Every route, streaming and not, is driven with the real ``openai`` and ``anthropic`` clients
(sync ones in a worker thread, since the server shares the test's event loop), plus raw HTTP for
what the SDKs never send (malformed JSON, missing fields).
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import anthropic
import httpx2
import openai
import pytest

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

USER = [{"role": "user", "content": "Tell me about the river sluice gates"}]
ANSWER = "Simulated answer from sim to: Tell me about the river sluice gates"


OpenAIFactory = Callable[..., openai.AsyncOpenAI]
AnthropicFactory = Callable[..., anthropic.AsyncAnthropic]


@pytest.fixture
async def oai() -> AsyncIterator[OpenAIFactory]:
    """``oai(sim, **options)``: an async OpenAI client on ``sim``, closed at teardown."""
    made: list[openai.AsyncOpenAI] = []

    def make(sim: SimulatedLLM, **kwargs: Any) -> openai.AsyncOpenAI:
        made.append(openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="test", **kwargs))
        return made[-1]

    yield make
    for client in made:
        await client.close()


@pytest.fixture
async def ant() -> AsyncIterator[AnthropicFactory]:
    """``ant(sim, **options)``: an async Anthropic client on ``sim``, closed at teardown."""
    made: list[anthropic.AsyncAnthropic] = []

    def make(sim: SimulatedLLM, **kwargs: Any) -> anthropic.AsyncAnthropic:
        made.append(
            anthropic.AsyncAnthropic(base_url=sim.anthropic_base_url, api_key="test", **kwargs)
        )
        return made[-1]

    yield make
    for client in made:
        await client.close()


async def post(sim: SimulatedLLM, path: str, data: bytes | str) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(sim.url + path, data=data, headers={"content-type": "application/json"}) as r,
    ):
        return r.status, await r.json()


# -- OpenAI chat ------------------------------------------------------------------------------


async def test_chat_answer_usage_and_headers(llm: SimulatedLLM, oai: OpenAIFactory) -> None:
    raw = await oai(llm).chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
    reply = raw.parse()
    assert raw.headers["x-sim-name"] == "sim"
    assert reply.id.startswith("chatcmpl-")
    assert reply.object == "chat.completion"
    assert reply.model == "gpt-4o"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == ANSWER
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (7, 12)
    assert reply.usage.total_tokens == 19


async def test_repeated_requests_get_fresh_ids(
    llm: SimulatedLLM, oai: OpenAIFactory, ant: AnthropicFactory
) -> None:
    first = await oai(llm).chat.completions.create(model="gpt-4o", messages=USER)
    second = await oai(llm).chat.completions.create(model="gpt-4o", messages=USER)
    assert first.id != second.id
    assert first.choices[0].message.content == second.choices[0].message.content
    one = await ant(llm).messages.create(model="c", max_tokens=9, messages=USER)
    two = await ant(llm).messages.create(model="c", max_tokens=9, messages=USER)
    assert one.id != two.id and one.content == two.content


async def test_chat_stream_with_usage(llm: SimulatedLLM, oai: OpenAIFactory) -> None:
    stream = await oai(llm).chat.completions.create(
        model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    assert len(chunks) == 1 + 5 + 1 + 1  # role, content deltas, finish, usage
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12


async def test_chat_max_tokens_truncates_with_length(llm: SimulatedLLM, oai: OpenAIFactory) -> None:
    client = oai(llm)
    reply = await client.chat.completions.create(
        model="gpt-4o", messages=USER, max_completion_tokens=3
    )
    assert reply.choices[0].message.content == "Simulated answer from"
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 3
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=USER, max_tokens=2, stream=True
    )
    chunks = [c async for c in stream]
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_content_parts_count_as_text(llm: SimulatedLLM, oai: OpenAIFactory) -> None:
    messages = [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": [{"type": "text", "text": "two words"}]},
    ]
    reply = await oai(llm).chat.completions.create(model="gpt-4o", messages=messages)
    assert reply.choices[0].message.content == "Simulated answer from sim to: two words"
    assert reply.usage is not None and reply.usage.prompt_tokens == 4


# -- OpenAI legacy completions, embeddings, models --------------------------------------------


async def test_legacy_completions(llm: SimulatedLLM, oai: OpenAIFactory) -> None:
    client = oai(llm)
    reply = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    assert reply.object == "text_completion"
    assert reply.choices[0].text == "Simulated answer from sim to: Say hi"
    assert reply.usage is not None and reply.usage.prompt_tokens == 2
    stream = await client.completions.create(
        model="gpt-3.5-turbo-instruct",
        prompt="Say hi",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == reply.choices[0].text
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 9


async def test_embeddings_base64_default_and_float(llm: SimulatedLLM, oai: OpenAIFactory) -> None:
    client = oai(llm)
    default = await client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
    assert llm.requests[-1].json["encoding_format"] == "base64"  # what the SDK asks by default
    floats = await client.embeddings.create(
        model="text-embedding-3-small", input=["a b", "c"], encoding_format="float"
    )
    assert [d.index for d in default.data] == [0, 1]
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    assert len(default.data[0].embedding) == 8
    assert default.data[0].embedding != default.data[1].embedding
    assert abs(sum(v * v for v in floats.data[0].embedding) - 1.0) < 1e-5
    assert default.usage.prompt_tokens == 3
    tokens = await client.embeddings.create(
        model="text-embedding-3-small", input=[1, 2, 3], dimensions=4, encoding_format="float"
    )
    assert len(tokens.data[0].embedding) == 4
    assert tokens.usage.prompt_tokens == 3


async def test_embeddings_raw_base64_is_float32(llm: SimulatedLLM) -> None:
    body = {"model": "e", "input": "x", "encoding_format": "base64"}
    status, reply = await post(llm, "/v1/embeddings", json.dumps(body))
    assert status == 200
    packed = base64.b64decode(reply["data"][0]["embedding"])
    assert len(struct.unpack("<8f", packed)) == 8
    assert reply["object"] == "list" and reply["data"][0]["object"] == "embedding"


async def test_unknown_model_is_404_when_models_given(
    llm_factory, oai: OpenAIFactory, ant: AnthropicFactory
) -> None:
    sim = await llm_factory(models=["gpt-4o"])
    with pytest.raises(openai.NotFoundError) as err:
        await oai(sim, max_retries=0).chat.completions.create(model="other", messages=USER)
    assert err.value.code == "model_not_found"
    with pytest.raises(anthropic.NotFoundError):
        await ant(sim, max_retries=0).messages.create(model="x", max_tokens=5, messages=USER)
    assert [m.id async for m in oai(sim).models.list()] == ["gpt-4o"]
    reply = await oai(sim).chat.completions.create(model="gpt-4o", messages=USER)
    assert reply.model == "gpt-4o"


# -- Anthropic ------------------------------------------------------------------------------


async def test_messages_answer_and_usage(llm: SimulatedLLM, ant: AnthropicFactory) -> None:
    raw = await ant(llm).messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=100, system="Be brief", messages=USER
    )
    reply = await raw.parse()
    assert raw.headers["x-sim-name"] == "sim"
    assert reply.id.startswith("msg_")
    assert reply.type == "message" and reply.role == "assistant"
    assert reply.model == "claude-sonnet-4-6"
    assert reply.content[0].type == "text" and reply.content[0].text == ANSWER
    assert reply.stop_reason == "end_turn" and reply.stop_sequence is None
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (9, 12)


async def test_messages_stream_events(llm: SimulatedLLM, ant: AnthropicFactory) -> None:
    client = ant(llm)
    stream = await client.messages.create(
        model="claude-haiku-4-5", max_tokens=100, messages=USER, stream=True
    )
    events = [event.type async for event in stream]
    assert events == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    async with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=4, messages=USER
    ) as helper:
        text = "".join([t async for t in helper.text_stream])
        final = await helper.get_final_message()
    assert text == "Simulated answer from sim"
    assert final.stop_reason == "max_tokens"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (7, 4)


async def test_anthropic_models_list(llm: SimulatedLLM, ant: AnthropicFactory) -> None:
    page = await ant(llm).models.list()
    assert "claude-sonnet-4-6" in [m.id for m in page.data]


# -- the synchronous clients, in a worker thread --------------------------------------------


async def test_openai_sync_client_every_route(llm: SimulatedLLM) -> None:
    def tour() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        with openai.OpenAI(base_url=llm.openai_base_url, api_key="test", max_retries=0) as c:
            seen["chat"] = c.chat.completions.create(model="m", messages=USER)
            seen["chat_stream"] = list(
                c.chat.completions.create(
                    model="m", messages=USER, stream=True, stream_options={"include_usage": True}
                )
            )
            seen["legacy"] = c.completions.create(model="m", prompt=["one", "two words"])
            seen["legacy_stream"] = list(c.completions.create(model="m", prompt="x", stream=True))
            seen["embeddings"] = c.embeddings.create(model="e", input="hello")
            seen["models"] = [m.id for m in c.models.list()]
            llm.enqueue(Fail(429, retry_after=1), BreakStream(1))
            for name, call in [
                ("fail", lambda: c.chat.completions.create(model="m", messages=USER)),
                (
                    "break",
                    lambda: list(c.chat.completions.create(model="m", messages=USER, stream=True)),
                ),
            ]:
                try:
                    call()
                except openai.APIError as error:
                    seen[name] = error
        return seen

    seen = await asyncio.to_thread(tour)
    assert seen["chat"].choices[0].message.content == ANSWER
    stream = seen["chat_stream"]
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == ANSWER
    assert stream[-1].usage.total_tokens == 19
    assert [c.index for c in seen["legacy"].choices] == [0, 1]
    assert seen["legacy"].usage.prompt_tokens == 3
    assert "".join(c.choices[0].text for c in seen["legacy_stream"]).endswith("to: x")
    assert len(seen["embeddings"].data[0].embedding) == 8
    assert "gpt-4o" in seen["models"]
    assert isinstance(seen["fail"], openai.RateLimitError)
    assert seen["fail"].response.headers["retry-after"] == "1"
    assert isinstance(seen["break"], openai.APIConnectionError)


async def test_anthropic_sync_client(llm: SimulatedLLM) -> None:
    def tour() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        with anthropic.Anthropic(
            base_url=llm.anthropic_base_url, api_key="test", max_retries=0
        ) as c:
            seen["message"] = c.messages.create(model="c", max_tokens=50, messages=USER)
            with c.messages.stream(model="c", max_tokens=50, messages=USER) as stream:
                seen["text"] = "".join(stream.text_stream)
                seen["final"] = stream.get_final_message()
            llm.enqueue(Fail(529))
            try:
                c.messages.create(model="c", max_tokens=50, messages=USER)
            except anthropic.APIStatusError as error:
                seen["fail"] = error
        return seen

    seen = await asyncio.to_thread(tour)
    assert seen["message"].content[0].text == ANSWER
    assert seen["text"] == ANSWER
    assert seen["final"].usage.output_tokens == 12
    assert isinstance(seen["fail"], anthropic.OverloadedError)


# -- scripted failures ------------------------------------------------------------------------


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


# -- recording and validation -----------------------------------------------------------------


async def test_requests_are_recorded_with_unknown_fields(
    llm: SimulatedLLM, oai: OpenAIFactory, ant: AnthropicFactory
) -> None:
    await oai(llm).chat.completions.create(
        model="gpt-4o", messages=USER, extra_body={"vendor_knob": {"a": 1}}, user="u1"
    )
    await ant(llm).messages.create(
        model="c", max_tokens=5, messages=USER, metadata={"user_id": "x"}
    )
    chat, messages = llm.requests
    assert (chat.method, chat.path) == ("POST", "/v1/chat/completions")
    assert chat.json["vendor_knob"] == {"a": 1} and chat.json["user"] == "u1"
    assert chat.headers["authorization"] == "Bearer test"
    assert messages.path == "/v1/messages"
    assert messages.headers["authorization"] == "Bearer test"  # anthropic SDK 2.x
    assert messages.json["metadata"] == {"user_id": "x"}
    assert messages.received_at >= chat.received_at


@pytest.mark.parametrize(
    ("path", "data", "check"),
    [
        ("/v1/chat/completions", "{not json", lambda b: b["error"]["type"]),
        ("/v1/chat/completions", '{"messages": []}', lambda b: b["error"]["param"]),
        ("/v1/embeddings", '{"model": "e"}', lambda b: b["error"]["param"]),
        ("/v1/messages", "{not json", lambda b: b["error"]["type"]),
        ("/v1/messages", '{"model": "c", "messages": []}', lambda b: b["error"]["message"]),
    ],
)
async def test_bad_requests_get_400_in_api_format(llm: SimulatedLLM, path, data, check) -> None:
    status, body = await post(llm, path, data)
    assert status == 400
    expected = {
        "/v1/chat/completions": ("invalid_request_error", "model"),
        "/v1/embeddings": ("input",),
        "/v1/messages": ("invalid_request_error", "max_tokens: Field required"),
    }[path]
    assert check(body) in expected
    if path == "/v1/messages":
        assert body["type"] == "error"
    assert llm.requests[-1].json is None or isinstance(llm.requests[-1].json, dict)


# -- fixtures and command line ----------------------------------------------------------------


async def test_factory_starts_distinct_upstreams(
    llm: SimulatedLLM, llm_factory, oai: OpenAIFactory
) -> None:
    other = await llm_factory(name="b")
    assert other.url != llm.url
    raw = await oai(other).chat.completions.with_raw_response.create(model="m", messages=USER)
    assert raw.headers["x-sim-name"] == "b"
    assert llm.requests == []


async def test_command_line_serves_until_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.simulator",
        "--port",
        "0",
        "--name",
        "cli",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line.startswith("simulator listening on http://127.0.0.1:")
        url = line.split()[-1]
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="test")
        raw = await client.chat.completions.with_raw_response.create(model="m", messages=USER)
        assert raw.headers["x-sim-name"] == "cli"
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 20) == 0
