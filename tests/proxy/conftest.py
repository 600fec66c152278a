"""Fixtures for behaviour tests of the proxy: a real sidecar in front of simulated upstreams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.support.sidecar import (
    SidecarHandle,
    close_test_sidecar,
    compile_policy,
    policy,
    provider_for,
    start_test_sidecar,
)
from tests.support.simulator import SimulatedLLM

SidecarFactory = Callable[..., Awaitable[SidecarHandle]]


@pytest.fixture
async def sidecar_factory() -> AsyncIterator[SidecarFactory]:
    """``await sidecar_factory(policy_document, **settings)``; every sidecar closed at teardown."""
    handles: list[SidecarHandle] = []

    async def make(document: dict[str, Any] | None = None, **settings: Any) -> SidecarHandle:
        config = compile_policy(document) if document is not None else None
        handle = await start_test_sidecar(config, **settings)
        handles.append(handle)
        return handle

    yield make
    for handle in reversed(handles):
        await close_test_sidecar(handle)


@pytest.fixture
async def sidecar(llm: SimulatedLLM, sidecar_factory: SidecarFactory) -> SidecarHandle:
    """A sidecar whose one provider is the ``llm`` simulator."""
    return await sidecar_factory(policy(providers=[provider_for(llm)]))
