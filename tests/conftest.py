"""Fixtures shared by every test: simulated LLM upstreams (see ``tests.support.simulator``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from hypothesis import settings

from tests.support.simulator import SimulatedLLM

# Property tests run on shared, busy machines: no per-example deadline (examples stay bounded).
settings.register_profile("sluice", deadline=None)
settings.load_profile("sluice")


@pytest.fixture
async def llm() -> AsyncIterator[SimulatedLLM]:
    """A started simulated upstream with default settings."""
    async with SimulatedLLM() as sim:
        yield sim


@pytest.fixture
async def llm_factory() -> AsyncIterator[Callable[..., Awaitable[SimulatedLLM]]]:
    """Start extra upstreams: ``await llm_factory(name="b", latency_s=0.1)``; closed at teardown."""
    started: list[SimulatedLLM] = []

    async def make(**kwargs: Any) -> SimulatedLLM:
        sim = SimulatedLLM(**kwargs)
        await sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in reversed(started):
        await sim.close()
