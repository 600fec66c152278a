"""Stale-if-error with the Redis cache store, shared by replicas: ages on the wall clock.

Redis expires entries in real time, which the tests' virtual clock cannot advance, so these
use real ages of a second or two and wait for what Redis shows (the entry's remaining expiry,
or the entry gone), never for a fixed time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import redis.asyncio

from sluice_sidecar.contract.economics import WorkloadRef
from sluice_sidecar.economics.cache_store import REDIS_PREFIX
from tests.economics.test_stale_if_error import DOWN, MESSAGES
from tests.support.sidecar import SidecarHandle, compile_policy, policy, provider_for
from tests.support.simulator import SimulatedLLM

TTL_S = 1  # the smallest TTL a policy takes: each test waits about this long, or twice it
WAIT_LIMIT_S = 5.0


def stale_policy(llm: SimulatedLLM, stale_s: int | None) -> dict:
    operation = {"enabled": True} | ({"staleIfErrorSeconds": stale_s} if stale_s else {})
    return policy(
        providers=[provider_for(llm)],
        cache={"enabled": True, "backend": "redis", "ttlSeconds": TTL_S},
        operations={"Completion": {"cache": operation}},
        retry={"maxAttempts": 2, "baseDelayMs": 1, "maxDelayMs": 1},
    )


@pytest.fixture
async def control(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """The test's own connection to the sidecars' Redis."""
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def replica(
    sidecar_factory, redis_url: str, document: dict, workload: str = "tests/app"
) -> SidecarHandle:
    """A sidecar of ``workload`` (namespace/name) using the shared Redis."""
    namespace, name = workload.split("/")
    config = compile_policy(document)
    config = config.model_copy(update={"workload": WorkloadRef(namespace=namespace, name=name)})
    handle = await sidecar_factory(redis_url=redis_url)
    handle.state.apply(config, source="test")
    return handle


async def ask(sidecar: SidecarHandle, key: str = "sk-app") -> Any:
    async with openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key=key, max_retries=0) as c:
        return await c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES, temperature=0.9
        )


async def entry(control: redis.asyncio.Redis) -> bytes | str:
    """The key of the one answer the sidecars stored."""
    keys = await control.keys(REDIS_PREFIX + "*")
    assert len(keys) == 1, keys
    return keys[0]


async def past_its_ttl(control: redis.asyncio.Redis, key: bytes | str, stale_s: int) -> None:
    """Until the entry has less than its stale time left: stored more than TTL_S ago.

    Redis announces no such moment, so its remaining expiry is polled (bounded, 5 ms apart)."""
    async with asyncio.timeout(WAIT_LIMIT_S):
        while await control.pttl(key) > stale_s * 1000:  # noqa: ASYNC110 - no event to await
            await asyncio.sleep(0.005)


async def expired(control: redis.asyncio.Redis, key: bytes | str) -> None:
    """Until Redis expires the entry: its keyspace event, subscribed before it can happen."""
    await control.config_set("notify-keyspace-events", "Ex")
    async with control.pubsub() as events, asyncio.timeout(WAIT_LIMIT_S):
        await events.subscribe("__keyevent@0__:expired")
        if not await control.exists(key):  # gone before the subscription: nothing to wait for
            return
        async for message in events.listen():
            if message["type"] == "message" and message["data"] == key:
                return


async def test_an_entry_past_its_ttl_is_served_stale_when_every_provider_fails(
    llm: SimulatedLLM, sidecar_factory, redis_url: str, control: redis.asyncio.Redis
) -> None:
    stale_s = 60
    sidecar = await replica(sidecar_factory, redis_url, stale_policy(llm, stale_s))
    fresh = await ask(sidecar)
    assert fresh.headers["x-sluice-cache"] == "miss"
    key = await entry(control)
    assert 0 < await control.pttl(key) <= (TTL_S + stale_s) * 1000  # kept past its TTL
    await past_its_ttl(control, key, stale_s)
    llm.enqueue(*DOWN)
    stale = await ask(sidecar)
    assert stale.headers["x-sluice-cache"] == "stale"
    assert int(stale.headers["x-sluice-stale-age-s"]) >= TTL_S
    assert stale.parse().choices[0].message.content == fresh.parse().choices[0].message.content
    assert len(llm.requests) == 3  # the fresh call, then both attempts of the failing one
    _, stats = await sidecar.admin("GET", "/admin/cache")
    assert stats["backend"] == "redis" and stats["staleServed"] == 1


async def test_an_entry_past_its_stale_bound_is_not_served(
    llm: SimulatedLLM, sidecar_factory, redis_url: str, control: redis.asyncio.Redis
) -> None:
    sidecar = await replica(sidecar_factory, redis_url, stale_policy(llm, 1))
    await ask(sidecar)
    await expired(control, await entry(control))  # TTL 1 s plus stale 1 s
    llm.enqueue(*DOWN)
    with pytest.raises(openai.APIStatusError) as caught:
        await ask(sidecar)
    assert caught.value.status_code == 503


async def test_a_stale_entry_never_crosses_tenants_or_keys(
    llm: SimulatedLLM, sidecar_factory, redis_url: str, control: redis.asyncio.Redis
) -> None:
    """Replicas of two workloads share one Redis: each serves only its own, to the same key."""
    document = stale_policy(llm, 60)
    ours = await replica(sidecar_factory, redis_url, document, "team-a/app")
    theirs = await replica(sidecar_factory, redis_url, document, "team-b/app")
    await ask(ours)
    await past_its_ttl(control, await entry(control), 60)
    llm.enqueue(*DOWN)  # enough failures for the three calls below
    for sidecar, key in ((theirs, "sk-app"), (ours, "sk-other")):
        with pytest.raises(openai.APIStatusError) as caught:
            await ask(sidecar, key)
        assert caught.value.status_code == 503
    assert (await ask(ours)).headers["x-sluice-cache"] == "stale"


async def test_a_replica_serves_stale_only_within_its_own_bound(
    llm: SimulatedLLM, sidecar_factory, redis_url: str, control: redis.asyncio.Redis
) -> None:
    """A replica keeping answers 300 s past their TTL (another version of the policy) shares
    the entry; one whose operation keeps none must answer the error, not that entry."""
    keeping = await replica(sidecar_factory, redis_url, stale_policy(llm, 300))
    keeping_none = await replica(sidecar_factory, redis_url, stale_policy(llm, None))
    await ask(keeping)
    await past_its_ttl(control, await entry(control), 300)
    llm.enqueue(*DOWN)
    with pytest.raises(openai.APIStatusError) as caught:
        await ask(keeping_none)
    assert caught.value.status_code == 503
