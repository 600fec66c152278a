"""A stale answer is served only within the bound of the configuration serving it.

An entry is kept for the TTL plus the stale-if-error time of the configuration that stored it;
a later configuration with a shorter bound (or none) must not serve it past its own. (Between
replicas sharing Redis, the same: tests/economics/test_stale_if_error_redis.py.)
"""

from __future__ import annotations

import openai
import pytest

from tests.economics.test_stale_if_error import DOWN, TTL, ask, stale_policy
from tests.support.sidecar import compile_policy, provider_for
from tests.support.simulator import SimulatedLLM


def keeping(seconds: int) -> dict:
    return {"Completion": {"cache": {"enabled": True, "staleIfErrorSeconds": seconds}}}


@pytest.mark.parametrize(
    "operations",
    [keeping(10), {"Completion": {"cache": {"enabled": True}}}],
    ids=["shorter-bound", "no-longer-opted-in"],
)
async def test_an_entry_kept_by_an_earlier_configuration_is_served_only_within_the_new_bound(
    llm: SimulatedLLM, sidecar_factory, operations: dict
) -> None:
    sidecar = await sidecar_factory(stale_policy(provider_for(llm), operations=keeping(300)))
    await ask(sidecar)  # kept TTL + 300 s
    new = compile_policy(stale_policy(provider_for(llm), operations=operations))
    sidecar.state.apply(new, source="test")
    sidecar.clock.advance(TTL + 100)  # within the old bound, past the new one
    llm.enqueue(*DOWN)
    with pytest.raises(openai.APIStatusError) as caught:
        await ask(sidecar)
    assert caught.value.status_code == 503
    _, stats = await sidecar.admin("GET", "/admin/cache")
    assert stats["staleServed"] == 0
