"""Breaker statistics: the attempts a breaker refused are counted, by reason."""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import Fail, Hang, SimulatedLLM
from tests.support.waiting import wait_until

MESSAGES = [{"role": "user", "content": "Caption the thumbnail"}]


def client(sidecar: SidecarHandle) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-app", max_retries=0)


def rejections(metrics: str, reason: str) -> float:
    prefix = (
        f'llm_circuit_breaker_rejections_total{{model="gpt-4o",provider="sim",reason="{reason}"}}'
    )
    values = [line.split()[-1] for line in metrics.splitlines() if line.startswith(prefix)]
    return float(values[0]) if values else 0.0


async def test_calls_refused_by_an_open_breaker_are_counted(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(
        policy(
            providers=[provider_for(llm)],
            retry={"maxAttempts": 1},
            circuitBreaker={"failureThreshold": 2, "failureRateThreshold": None},
        )
    )
    llm.enqueue(Fail(503), Fail(503))
    async with client(sidecar) as c:
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        for _ in range(3):
            with pytest.raises(openai.InternalServerError, match="is open"):
                await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert rejections(await sidecar.metrics_text(), "open") == 3
    assert len(llm.requests) == 2


async def test_calls_refused_by_a_full_bulkhead_are_counted(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(
        policy(providers=[provider_for(llm)], circuitBreaker={"maxConcurrent": 1})
    )
    llm.enqueue(Hang())
    async with client(sidecar) as c:
        hanging = asyncio.create_task(c.chat.completions.create(model="gpt-4o", messages=MESSAGES))
        await wait_until(lambda: llm.in_flight == 1)
        with pytest.raises(openai.InternalServerError, match="already in flight"):
            await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        hanging.cancel()
        await llm.disconnected.wait()
    metrics = await sidecar.metrics_text()
    assert rejections(metrics, "bulkhead") == 1 and rejections(metrics, "open") == 0
