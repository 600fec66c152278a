"""The Anthropic Messages wire format through the sidecar, driven by the official anthropic SDK."""

from __future__ import annotations

import asyncio

import anthropic
import pytest

from tests.support.sidecar import SidecarHandle, anthropic_provider_for, policy
from tests.support.simulator import Fail, SimulatedLLM

MESSAGES = [{"role": "user", "content": "Plan three scenes about a river"}]


@pytest.fixture
async def claude_sidecar(llm: SimulatedLLM, sidecar_factory) -> SidecarHandle:
    return await sidecar_factory(policy(providers=[anthropic_provider_for(llm, "claude")]))


def client(sidecar: SidecarHandle, **kwargs: object) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=sidecar.anthropic_url, api_key="sk-ant-app", **kwargs)  # type: ignore[arg-type]


async def test_message_async(claude_sidecar: SidecarHandle, llm: SimulatedLLM) -> None:
    async with client(claude_sidecar) as c:
        message = await c.messages.create(
            model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES
        )
    assert message.content[0].text.startswith("Simulated answer from sim")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    sent = llm.requests[-1].headers
    # The app's own key reaches the provider (SDK versions differ in which header carries it).
    assert "sk-ant-app" in (
        sent.get("x-api-key", ""),
        sent.get("authorization", "").removeprefix("Bearer "),
    )


async def test_message_sync_client(claude_sidecar: SidecarHandle) -> None:
    def call() -> str:
        with anthropic.Anthropic(base_url=claude_sidecar.anthropic_url, api_key="k") as c:
            return c.messages.create(model="claude-x", max_tokens=50, messages=MESSAGES).stop_reason

    assert await asyncio.to_thread(call) == "end_turn"


async def test_message_stream(claude_sidecar: SidecarHandle) -> None:
    async with (
        client(claude_sidecar) as c,
        c.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES) as stream,
    ):
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text.startswith("Simulated answer")
    assert final.usage.output_tokens > 0


async def test_preset_fills_required_max_tokens(
    claude_sidecar: SidecarHandle, llm: SimulatedLLM
) -> None:
    async with client(claude_sidecar) as c:
        await c.messages.create(
            model="claude-x",
            max_tokens=64,
            messages=MESSAGES,
            extra_headers={"X-LLM-Operation": "Planning"},
        )
    sent = llm.requests[-1].json
    assert sent["max_tokens"] == 64 and sent["temperature"] == 0.7


async def test_errors_come_back_in_anthropic_format(
    claude_sidecar: SidecarHandle, llm: SimulatedLLM
) -> None:
    llm.enqueue(Fail(401, message="invalid x-api-key"))
    async with client(claude_sidecar, max_retries=0) as c:
        with pytest.raises(anthropic.AuthenticationError, match="invalid x-api-key"):
            await c.messages.create(model="claude-x", max_tokens=10, messages=MESSAGES)
        with pytest.raises(anthropic.BadRequestError) as caught:
            await c.messages.create(
                model="claude-x",
                max_tokens=10,
                messages=MESSAGES,
                extra_headers={"X-LLM-Operation": "NoSuchOperation"},
            )
    assert caught.value.body["type"] == "error"  # type: ignore[index]
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert len(llm.requests) == 1  # the 401 was not retried


async def test_models_list_goes_to_the_anthropic_provider(claude_sidecar: SidecarHandle) -> None:
    async with client(claude_sidecar) as c:
        models = [m.id async for m in c.models.list()]
    assert models
