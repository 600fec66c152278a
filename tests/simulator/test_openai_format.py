"""The simulator's OpenAI routes, parsed by the official openai SDK (async and sync)."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from typing import Any

import anthropic
import openai
import pytest

from tests.simulator.common import ANSWER, USER, AnthropicFactory, OpenAIFactory, post
from tests.support.simulator import (
    BreakStream,
    Fail,
    SimulatedLLM,
)


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
