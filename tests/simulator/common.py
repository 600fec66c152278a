"""Prompt, expected answer, client factory types and a raw HTTP helper for the simulator's tests."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import anthropic
import openai

from tests.support.simulator import SimulatedLLM

USER = [{"role": "user", "content": "Tell me about the river sluice gates"}]
ANSWER = "Simulated answer from sim to: Tell me about the river sluice gates"

OpenAIFactory = Callable[..., openai.AsyncOpenAI]
AnthropicFactory = Callable[..., anthropic.AsyncAnthropic]


async def post(sim: SimulatedLLM, path: str, data: bytes | str) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(sim.url + path, data=data, headers={"content-type": "application/json"}) as r,
    ):
        return r.status, await r.json()
