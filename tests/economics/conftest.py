"""Fixtures of the economics behaviour tests: real sidecars with policies and budgets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio

from sluice_sidecar.contract import LlmPolicy, compile_policies
from sluice_sidecar.contract.model import LlmBudget
from tests.proxy.conftest import sidecar, sidecar_factory
from tests.support.redis_server import RedisServer, missing_reason, start_redis
from tests.support.sidecar import SidecarHandle, close_test_sidecar, start_test_sidecar

__all__ = [
    "budget",
    "economics_sidecar",
    "redis_server",
    "redis_url",
    "sidecar",
    "sidecar_factory",
]

EconomicsSidecar = Callable[..., Awaitable[SidecarHandle]]


def budget(name: str = "team", **spec: Any) -> dict[str, Any]:
    """An LlmBudget document."""
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "LlmBudget",
        "metadata": {"name": name, "namespace": "tests"},
        "spec": spec,
    }


@pytest.fixture
async def economics_sidecar() -> AsyncIterator[EconomicsSidecar]:
    """``await economics_sidecar(policy_doc, budgets=[...], **settings)``; closed at teardown."""
    handles: list[SidecarHandle] = []

    async def make(
        document: dict[str, Any], budgets: list[dict[str, Any]] = (), **settings: Any
    ) -> SidecarHandle:
        config = compile_policies(
            [LlmPolicy.model_validate(document)], [LlmBudget.model_validate(b) for b in budgets]
        )
        handle = await start_test_sidecar(config, **settings)
        handles.append(handle)
        return handle

    yield make
    for handle in reversed(handles):
        if handle.running._runners:
            await close_test_sidecar(handle)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session; skipped with the reason when not installed."""
    reason = missing_reason()
    if reason is not None:
        pytest.skip(reason)
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
async def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    await client.flushall()
    await client.aclose()
    return redis_server.url
