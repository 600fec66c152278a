"""Adaptive attempt timeouts: a hung attempt is abandoned at the learned latency and retried."""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import Hang, SimulatedLLM

MESSAGES = [{"role": "user", "content": "Tag the scene"}]
LEARNING_CALLS = 5


def tagging(llm: SimulatedLLM, **adaptive: object) -> dict:
    operation: dict = {"timeoutSeconds": 1.5}
    if adaptive:
        operation["adaptiveTimeout"] = adaptive
    return policy(providers=[provider_for(llm)], operations={"Tagging": operation})


async def learn_then_hang(sidecar: SidecarHandle, llm: SimulatedLLM):
    """A provider that answers fast, then hangs once; the answer to the call that hit it."""
    headers = {"X-LLM-Operation": "Tagging"}
    async with openai.AsyncOpenAI(
        base_url=sidecar.openai_url, api_key="sk-app", max_retries=0
    ) as c:
        for _ in range(LEARNING_CALLS):
            await c.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, extra_headers=headers
            )
        llm.enqueue(Hang())
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            answer = await c.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=MESSAGES, extra_headers=headers
            )
        finally:
            elapsed = loop.time() - started
    return answer, elapsed


async def test_a_hung_attempt_is_abandoned_at_the_learned_latency_and_retried(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(
        tagging(llm, enabled=True, floorSeconds=0.2, minSamples=LEARNING_CALLS)
    )
    answer, elapsed = await learn_then_hang(sidecar, llm)
    assert answer.headers["x-sluice-attempts"] == "2"
    assert 0.2 <= elapsed < 1.0  # the floor, then a fast retry; the deadline is 1.5 s
    await llm.disconnected.wait()  # the hung attempt was closed upstream
    metrics = await sidecar.metrics_text()
    assert 'reason="attempt_timeout"' in metrics


async def test_without_adaptive_timeouts_the_hung_attempt_runs_to_the_deadline(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(tagging(llm))  # off by default
    with pytest.raises(openai.APIStatusError, match="Tagging timed out") as caught:
        await learn_then_hang(sidecar, llm)
    assert caught.value.status_code == 504


async def test_too_little_history_sets_no_attempt_timeout(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(
        tagging(llm, enabled=True, floorSeconds=0.2, minSamples=LEARNING_CALLS + 1)
    )
    with pytest.raises(openai.APIStatusError) as caught:
        await learn_then_hang(sidecar, llm)
    assert caught.value.status_code == 504
