"""What the simulator records and refuses, its fixtures and its command line."""

from __future__ import annotations

import asyncio
import sys

import openai
import pytest

from tests.simulator.common import USER, AnthropicFactory, OpenAIFactory, post
from tests.support.simulator import (
    SimulatedLLM,
)


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
