"""``X-LLM-Timeout``: a caller shortens its call's deadline, or extends it where the policy lets."""

from __future__ import annotations

import asyncio

import anthropic
import openai
import pytest

from tests.support.sidecar import SidecarHandle, anthropic_provider_for, policy, provider_for
from tests.support.simulator import Delay, Hang, SimulatedLLM

MESSAGES = [{"role": "user", "content": "Summarise the chapter"}]


def client(sidecar: SidecarHandle) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-app", max_retries=0)


async def test_a_shorter_timeout_answers_504_at_that_time(
    sidecar: SidecarHandle, llm: SimulatedLLM
) -> None:
    llm.enqueue(Hang())
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with client(sidecar) as c:
        with pytest.raises(openai.APIStatusError, match=r"timed out after 0\.3s") as caught:
            await c.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, extra_headers={"X-LLM-Timeout": "0.3"}
            )
    assert caught.value.status_code == 504
    assert 0.3 <= loop.time() - started < 2  # the operation's own timeout is 60 s
    await llm.disconnected.wait()


async def test_a_longer_timeout_is_refused_unless_the_policy_allows_it(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(
        policy(
            providers=[provider_for(llm)],
            operations={
                "Fixed": {"timeoutSeconds": 0.2},
                "Stretchy": {"timeoutSeconds": 0.2, "maxTimeoutSeconds": 5},
            },
        )
    )
    async with client(sidecar) as c:
        with pytest.raises(openai.BadRequestError, match="cannot be extended") as caught:
            await c.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
                extra_headers={"X-LLM-Operation": "Fixed", "X-LLM-Timeout": "1"},
            )
        assert caught.value.body["code"] == "timeout_exceeded"
        llm.enqueue(Delay(0.4))  # past the operation's 0.2 s, inside the caller's 1 s
        response = await c.chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=MESSAGES,
            extra_headers={"X-LLM-Operation": "Stretchy", "X-LLM-Timeout": "1"},
        )
        assert response.parse().choices[0].message.content
        with pytest.raises(openai.BadRequestError, match="maxTimeoutSeconds is 5"):
            await c.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
                extra_headers={"X-LLM-Operation": "Stretchy", "X-LLM-Timeout": "6"},
            )
    assert len(llm.requests) == 1  # refusals never reach the provider


@pytest.mark.parametrize("value", ["abc", "-1", "0", "0.0", "nan", "inf", "1e3", "0x10", "9" * 40])
async def test_a_bad_timeout_is_a_400_in_the_openai_format(
    sidecar: SidecarHandle, llm: SimulatedLLM, value: str
) -> None:
    async with client(sidecar) as c:
        with pytest.raises(openai.BadRequestError, match="X-LLM-Timeout") as caught:
            await c.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, extra_headers={"X-LLM-Timeout": value}
            )
    assert caught.value.body["type"] == "invalid_request_error"
    assert not llm.requests


async def test_a_bad_timeout_is_a_400_in_the_anthropic_format(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(policy(providers=[anthropic_provider_for(llm, "claude")]))
    async with anthropic.AsyncAnthropic(
        base_url=sidecar.anthropic_url, api_key="sk-ant-app", max_retries=0
    ) as c:
        with pytest.raises(anthropic.BadRequestError, match="X-LLM-Timeout"):
            await c.messages.create(
                model="claude-3-5-sonnet",
                max_tokens=20,
                messages=MESSAGES,
                extra_headers={"X-LLM-Timeout": "soon"},
            )
    assert not llm.requests


async def test_the_timeout_header_is_not_sent_upstream(
    sidecar: SidecarHandle, llm: SimulatedLLM
) -> None:
    async with client(sidecar) as c:
        await c.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, extra_headers={"X-LLM-Timeout": "5"}
        )
    assert "x-llm-timeout" not in llm.requests[0].headers
