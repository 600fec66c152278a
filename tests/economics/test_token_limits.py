"""Token limits per call and per session beside the cost limits (the orchestrator's 5,000 per
operation and 50,000 per session), refused before the call leaves, in the caller's format."""

from __future__ import annotations

import anthropic
import openai
import pytest

from sluice_sidecar.economics.usage import estimate_prompt_tokens
from tests.economics.conftest import budget
from tests.support.sidecar import (
    SidecarHandle,
    anthropic_provider_for,
    close_test_sidecar,
    policy,
    provider_for,
)
from tests.support.simulator import SimulatedLLM

MESSAGES = [{"role": "user", "content": "Draft the opening scene"}]
PROMPT = estimate_prompt_tokens({"messages": MESSAGES})
LIMITS = {"perRequestTokens": 5000, "perSessionTokens": 50_000}


def client(sidecar: SidecarHandle) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-app", max_retries=0)


async def test_a_call_that_could_use_more_tokens_than_allowed_is_refused(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    sidecar = await economics_sidecar(
        policy(providers=[provider_for(llm)]), [budget(limits=LIMITS)]
    )
    async with client(sidecar) as c:
        await c.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=4000)
        with pytest.raises(openai.RateLimitError) as caught:
            await c.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=5000)
    error = caught.value.body
    assert error["type"] == "budget_exceeded" and error["limitKind"] == "perRequestTokens"
    assert error["limit"] == "5000" and error["callTokens"] == PROMPT + 5000
    assert error["message"].startswith(
        f"budget tests/team: this call could use up to {PROMPT + 5000} tokens (5000 output tokens"
        " at most, from max_tokens), more than its per-request limit of 5000 tokens;"
        " set max_tokens to fit"
    )
    assert "retry-after" not in caught.value.response.headers  # waiting cannot help
    assert len(llm.requests) == 1


async def test_a_session_is_refused_once_its_tokens_would_pass_the_limit(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    limit = 3 * (PROMPT + 100)
    sidecar = await economics_sidecar(
        policy(providers=[provider_for(llm)]), [budget(limits={"perSessionTokens": limit})]
    )
    job = {"X-LLM-Session": "video-123"}
    async with client(sidecar) as c:
        used = 0
        with pytest.raises(openai.RateLimitError) as caught:
            for _ in range(100):
                answer = await c.chat.completions.create(
                    model="gpt-4o", messages=MESSAGES, max_tokens=100, extra_headers=job
                )
                assert answer.usage is not None
                used += answer.usage.total_tokens
        assert used + PROMPT + 100 > limit  # refused only when the next call might not fit
        assert caught.value.body["limitKind"] == "perSessionTokens"
        assert caught.value.body["spent"] == str(used)
        other = await c.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            max_tokens=100,
            extra_headers={"X-LLM-Session": "video-124"},
        )
    assert other.choices


async def test_anthropic_callers_get_the_token_refusal_in_their_format(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    sidecar = await economics_sidecar(
        policy(providers=[anthropic_provider_for(llm, "claude")]), [budget(limits=LIMITS)]
    )
    async with anthropic.AsyncAnthropic(
        base_url=sidecar.anthropic_url, api_key="k", max_retries=0
    ) as c:
        with pytest.raises(anthropic.RateLimitError) as caught:
            await c.messages.create(model="claude-3-haiku", max_tokens=8000, messages=MESSAGES)
    assert caught.value.body["error"]["type"] == "budget_exceeded"
    assert caught.value.body["error"]["limitKind"] == "perRequestTokens"


# A session limit one call fits in, and no second: the first call's own tokens are left over.
ONE_CALL = PROMPT + 100 + 1


async def call_in_session(sidecar: SidecarHandle, session: str) -> None:
    async with client(sidecar) as c:
        await c.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            max_tokens=100,
            extra_headers={"X-LLM-Session": session},
        )


async def test_session_tokens_are_shared_by_replicas_in_redis(
    redis_url: str, llm: SimulatedLLM, economics_sidecar
) -> None:
    document = policy(providers=[provider_for(llm)])
    budgets = [budget(limits={"perSessionTokens": ONE_CALL})]
    replicas = [await economics_sidecar(document, budgets, redis_url=redis_url) for _ in range(2)]
    await call_in_session(replicas[0], "video-9")
    await replicas[0].state.budgets.store.drain()
    with pytest.raises(openai.RateLimitError) as caught:
        await call_in_session(replicas[1], "video-9")
    assert caught.value.body["limitKind"] == "perSessionTokens"


async def test_session_tokens_survive_a_restart(
    llm: SimulatedLLM, economics_sidecar, tmp_path
) -> None:
    document = policy(providers=[provider_for(llm)])
    budgets = [budget(limits={"perSessionTokens": ONE_CALL})]
    first = await economics_sidecar(document, budgets, state_dir=tmp_path)
    await call_in_session(first, "video-7")
    await close_test_sidecar(first)  # flushes the state file
    second = await economics_sidecar(document, budgets, state_dir=tmp_path)
    with pytest.raises(openai.RateLimitError) as caught:
        await call_in_session(second, "video-7")
    assert caught.value.body["limitKind"] == "perSessionTokens"
