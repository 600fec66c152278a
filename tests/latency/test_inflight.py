"""``GET /admin/inflight``: the calls being served right now, where they are and how late."""

from __future__ import annotations

import asyncio

import openai

from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import Hang, SimulatedLLM
from tests.support.waiting import wait_until

MESSAGES = [{"role": "user", "content": "Plan the storyboard"}]


async def test_inflight_lists_a_hanging_call_then_forgets_it(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar: SidecarHandle = await sidecar_factory(
        policy(
            providers=[provider_for(llm, "primary")],
            operations={"Storyboard": {"timeoutSeconds": 30, "warningThreshold": 0.01}},
        )
    )
    llm.enqueue(Hang())
    async with openai.AsyncOpenAI(
        base_url=sidecar.openai_url, api_key="sk-app", max_retries=0
    ) as c:
        call = asyncio.create_task(
            c.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, extra_headers={"X-LLM-Operation": "Storyboard"}
            )
        )
        await wait_until(lambda: llm.in_flight == 1)
        status, body = await sidecar.admin("GET", "/admin/inflight")
        assert status == 200 and body["count"] == 1
        [row] = body["calls"]
        assert row["operation"] == "Storyboard"
        assert row["provider"] == "primary"
        assert row["model"] == "gpt-4o"
        assert row["attempts"] == 1 and row["stream"] is False
        assert row["timeoutMs"] == 30_000
        assert row["estimatedMs"] > 0
        assert row["elapsedMs"] >= 0
        # 1 % of 30 s is 300 ms: wait for the warning point, then it shows.
        await wait_until(lambda: llm.in_flight == 1 and _past(sidecar, 0.3))
        status, body = await sidecar.admin("GET", "/admin/inflight")
        assert body["calls"][0]["warning"] == "slow"
        call.cancel()
        await llm.disconnected.wait()
    await wait_until(lambda: len(sidecar.state.latency.in_flight) == 0)
    status, body = await sidecar.admin("GET", "/admin/inflight")
    assert body == {"count": 0, "calls": []}


def _past(sidecar: SidecarHandle, seconds: float) -> bool:
    [entry] = sidecar.state.latency.in_flight.snapshot(asyncio.get_running_loop().time())["calls"]
    return entry["elapsedMs"] >= seconds * 1000


async def test_inflight_needs_the_admin_token(sidecar: SidecarHandle) -> None:
    status, body = await sidecar.admin("GET", "/admin/inflight", headers={})
    assert status == 401 and "token" in body["error"]
