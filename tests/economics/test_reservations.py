"""A hard budget's reservation is never lower than what the call can cost when it settles."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import openai

from sluice_sidecar.pipeline.metering import worst_cost
from tests.economics.calls import chat_call, runtime_of
from tests.economics.conftest import budget
from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import SimulatedLLM

MESSAGES = [{"role": "user", "content": "Name three rivers"}]
LIMIT = Decimal("0.01")


def per_token(dollars: int) -> dict[str, int]:
    """A price of ``dollars`` per million tokens, input and output alike."""
    return {"inputPer1M": dollars, "outputPer1M": dollars}


def client(sidecar: SidecarHandle) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-app", max_retries=0)


async def spent(sidecar: SidecarHandle) -> Decimal:
    _, body = await sidecar.admin("GET", "/admin/budgets")
    return Decimal(body["budgets"][0]["spentUSD"])


async def hundred_at_once(call: Callable[[], Awaitable[object]]) -> int:
    """Run 100 calls at once; how many the budget let through."""

    async def one() -> bool:
        try:
            await call()
        except openai.RateLimitError:
            return False
        return True

    return sum(await asyncio.gather(*(one() for _ in range(100))))


async def test_provider_model_prices_hold_a_hard_budget(llm_factory, economics_sidecar) -> None:
    slow: SimulatedLLM = await llm_factory(name="slow", latency_s=0.05)
    sidecar = await economics_sidecar(
        policy(providers=[provider_for(slow)], pricing={"slow/m": per_token(20)}),
        [budget(limits={"costUSD": str(LIMIT)})],
    )
    async with client(sidecar) as c:
        passed = await hundred_at_once(
            lambda: c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=10)
        )
    after = await spent(sidecar)
    assert 0 < passed < 100
    assert 0 < after <= LIMIT, f"overspent: {after} > {LIMIT}"


async def test_token_array_prompts_hold_a_hard_budget(llm_factory, economics_sidecar) -> None:
    slow: SimulatedLLM = await llm_factory(name="slow", latency_s=0.05)
    sidecar = await economics_sidecar(
        policy(providers=[provider_for(slow)], pricing={"e": per_token(1)}),
        [budget(limits={"costUSD": str(LIMIT)})],
    )
    tokens = list(range(500))  # 500 tokens each: $0.0005 a call
    async with client(sidecar) as c:
        passed = await hundred_at_once(lambda: c.embeddings.create(model="e", input=[tokens]))
    after = await spent(sidecar)
    assert 0 < passed < 100
    assert 0 < after <= LIMIT, f"overspent: {after} > {LIMIT}"


async def test_the_reservation_takes_the_dearest_candidate_provider(tmp_path: Path) -> None:
    document = policy(
        providers=[
            {"name": "cheap", "type": "openai-compatible", "baseUrl": "http://127.0.0.1:9/v1"},
            {
                "name": "dear",
                "type": "openai-compatible",
                "baseUrl": "http://127.0.0.1:9/v1",
                "modelMap": {"m": "m-large"},
            },
        ],
        pricing={"cheap/m": per_token(1), "dear/m-large": per_token(7), "m": per_token(3)},
    )
    call = chat_call(runtime_of(document, tmp_path))
    assert worst_cost(call, 400_000, 600_000) == Decimal(7)
