"""Stream heartbeats: comment lines while waiting for the first token, invisible to the SDKs."""

from __future__ import annotations

import re

import aiohttp
import anthropic
import openai
import pytest

from tests.support.sidecar import SidecarHandle, anthropic_provider_for, policy, provider_for
from tests.support.simulator import Fail, Hang, SimulatedLLM

MESSAGES = [{"role": "user", "content": "Write the closing scene"}]
HEARTBEAT = re.compile(rb"^: sluice waiting elapsed_ms=(\d+) estimated_ms=(\d+) warning=(ok|slow)$")


def fast_heartbeats(*providers, **spec) -> dict:
    return policy(providers=list(providers), latency={"heartbeatSeconds": 0.1}, **spec)


async def raw_stream(sidecar: SidecarHandle, **headers: str) -> tuple[int, list[bytes]]:
    body = {"model": "gpt-4o", "messages": MESSAGES, "stream": True}
    async with (
        aiohttp.ClientSession() as http,
        http.post(sidecar.openai_url + "/chat/completions", json=body, headers=headers) as response,
    ):
        return response.status, (await response.read()).split(b"\n")


async def test_heartbeats_precede_a_slow_first_token_and_retries_go_on_behind_them(
    llm_factory, sidecar_factory
) -> None:
    slow = await llm_factory(name="slow", latency_s=0.25)
    sidecar = await sidecar_factory(fast_heartbeats(provider_for(slow)))
    slow.enqueue(Fail(503))  # 0.25 s, then a retry that answers 0.25 s later
    status, lines = await raw_stream(sidecar)
    assert status == 200
    beats = [HEARTBEAT.match(line) for line in lines if line.startswith(b":")]
    assert len(beats) >= 3 and all(beats)
    elapsed = [int(beat[1]) for beat in beats if beat]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 100
    assert lines[-3:] == [b"data: [DONE]", b"", b""]
    assert len(slow.requests) == 2


async def test_no_heartbeat_before_the_first_interval_keeps_a_fast_failure_status(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(fast_heartbeats(provider_for(llm)))
    llm.enqueue(Fail(400, message="bad request shape"))
    status, lines = await raw_stream(sidecar)
    assert status == 400 and not any(line.startswith(b":") for line in lines)


async def test_openai_sdk_reads_a_stream_with_heartbeats_unchanged(
    llm_factory, sidecar_factory
) -> None:
    slow = await llm_factory(name="slow", latency_s=0.35)
    sidecar = await sidecar_factory(fast_heartbeats(provider_for(slow)))
    async with openai.AsyncOpenAI(
        base_url=sidecar.openai_url, api_key="sk-app", max_retries=0
    ) as c:
        stream = await c.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        chunks = [chunk async for chunk in stream]
        quick = await c.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        reference = [chunk async for chunk in quick]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    expected = "".join(c.choices[0].delta.content or "" for c in reference if c.choices)
    assert text and text == expected


async def test_anthropic_sdk_reads_a_stream_with_heartbeats_unchanged(
    llm_factory, sidecar_factory
) -> None:
    slow = await llm_factory(name="slow", latency_s=0.35)
    sidecar = await sidecar_factory(fast_heartbeats(anthropic_provider_for(slow, "claude")))
    async with (
        anthropic.AsyncAnthropic(
            base_url=sidecar.anthropic_url, api_key="sk-ant-app", max_retries=0
        ) as c,
        c.messages.stream(model="claude-3-5-sonnet", max_tokens=50, messages=MESSAGES) as stream,
    ):
        message = await stream.get_final_message()
    assert message.content[0].text  # type: ignore[union-attr]
    assert message.usage.output_tokens > 0


async def test_a_failure_after_heartbeats_is_an_error_the_openai_sdk_raises(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(
        fast_heartbeats(provider_for(llm), operations={"Ending": {"timeoutSeconds": 0.45}})
    )
    llm.enqueue(Hang())
    async with openai.AsyncOpenAI(
        base_url=sidecar.openai_url, api_key="sk-app", max_retries=0
    ) as c:
        stream = await c.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            stream=True,
            extra_headers={"X-LLM-Operation": "Ending"},
        )
        with pytest.raises(openai.APIError, match="Ending timed out"):
            async for _chunk in stream:
                pass
    await llm.disconnected.wait()  # the abandoned attempt was cancelled upstream


async def test_a_failure_after_heartbeats_is_an_error_the_anthropic_sdk_raises(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(
        fast_heartbeats(
            anthropic_provider_for(llm, "claude"), operations={"Ending": {"timeoutSeconds": 0.45}}
        )
    )
    llm.enqueue(Hang())
    async with anthropic.AsyncAnthropic(
        base_url=sidecar.anthropic_url, api_key="sk-ant-app", max_retries=0
    ) as c:
        with pytest.raises(anthropic.APIStatusError, match="Ending timed out"):
            async with c.messages.stream(
                model="claude-3-5-sonnet",
                max_tokens=50,
                messages=MESSAGES,
                extra_headers={"X-LLM-Operation": "Ending"},
            ) as stream:
                await stream.get_final_message()
    await llm.disconnected.wait()


async def test_retries_exhausted_after_heartbeats_end_with_the_error_event(
    llm_factory, sidecar_factory
) -> None:
    flaky = await llm_factory(name="flaky", latency_s=0.15)
    sidecar = await sidecar_factory(fast_heartbeats(provider_for(flaky)))
    flaky.enqueue(*[Fail(503, message="overloaded")] * 4)
    status, lines = await raw_stream(sidecar)
    assert status == 200  # the heartbeats had begun: the status was already sent
    assert any(HEARTBEAT.match(line) for line in lines)
    [error] = [line for line in lines if line.startswith(b"data: ")]
    assert b'"error"' in error and b"503" in error
    assert len(flaky.requests) == 4
