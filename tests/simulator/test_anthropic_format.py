"""The simulator's Anthropic routes, parsed by the official anthropic SDK (async and sync)."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic

from tests.simulator.common import ANSWER, USER, AnthropicFactory
from tests.support.simulator import (
    Fail,
    SimulatedLLM,
)


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
