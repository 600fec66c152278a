"""SDK client fixtures for the simulator's tests: ``oai(sim)`` and ``ant(sim)``.

Sync clients run in a worker thread (``asyncio.to_thread``) since the server shares the test's
event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from tests.simulator.common import AnthropicFactory, OpenAIFactory
from tests.support.simulator import SimulatedLLM


@pytest.fixture
async def oai() -> AsyncIterator[OpenAIFactory]:
    """``oai(sim, **options)``: an async OpenAI client on ``sim``, closed at teardown."""
    made: list[openai.AsyncOpenAI] = []

    def make(sim: SimulatedLLM, **kwargs: Any) -> openai.AsyncOpenAI:
        made.append(openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="test", **kwargs))
        return made[-1]

    yield make
    for client in made:
        await client.close()


@pytest.fixture
async def ant() -> AsyncIterator[AnthropicFactory]:
    """``ant(sim, **options)``: an async Anthropic client on ``sim``, closed at teardown."""
    made: list[anthropic.AsyncAnthropic] = []

    def make(sim: SimulatedLLM, **kwargs: Any) -> anthropic.AsyncAnthropic:
        made.append(
            anthropic.AsyncAnthropic(base_url=sim.anthropic_base_url, api_key="test", **kwargs)
        )
        return made[-1]

    yield make
    for client in made:
        await client.close()
