"""Fixtures for the admin API tests: the proxy and economics tests' real sidecars, and one
with something in every admin report."""

from __future__ import annotations

import openai
import pytest

from tests.economics.conftest import budget, economics_sidecar, redis_server, redis_url
from tests.proxy.conftest import sidecar, sidecar_factory
from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import SimulatedLLM

__all__ = ["economics_sidecar", "redis_server", "redis_url", "sidecar", "sidecar_factory"]
MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture
async def busy(llm: SimulatedLLM, economics_sidecar) -> SidecarHandle:
    """A sidecar with something in every report: calls, a session, budgets, cache, breakers."""
    document = policy(
        providers=[provider_for(llm)],
        pricing={"m": {"inputPer1M": 1, "outputPer1M": 2}},
        cache={"enabled": True, "ttlSeconds": 600},
    )
    budgets = [budget(limits={"costUSD": 100, "tokens": 10**6}), budget("soft", enforcement="soft")]
    sidecar = await economics_sidecar(document, budgets)
    async with openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="k", max_retries=0) as c:
        for _ in range(2):  # the second is a cache hit
            await c.chat.completions.create(
                model="m", messages=MESSAGES, extra_headers={"X-LLM-Session": "job-1"}
            )
        await c.embeddings.create(model="m", input=["a", "b"])
    return sidecar
