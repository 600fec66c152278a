"""Active health checks: an open circuit's provider is probed and closed without user traffic."""

from __future__ import annotations

import openai
import pytest

from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import Fail, SimulatedLLM
from tests.support.waiting import wait_until

MESSAGES = [{"role": "user", "content": "Pick the music"}]


def breaking(llm: SimulatedLLM, health_check: dict) -> dict:
    return policy(
        providers=[provider_for(llm)],
        retry={"maxAttempts": 1},
        circuitBreaker={
            "failureThreshold": 1,
            "failureRateThreshold": None,
            "openSeconds": 600,
            "maxOpenSeconds": 600,
            "successThreshold": 2,
            "healthCheck": health_check,
        },
    )


async def open_the_circuit(sidecar: SidecarHandle, llm: SimulatedLLM) -> None:
    llm.enqueue(Fail(503))
    async with openai.AsyncOpenAI(
        base_url=sidecar.openai_url, api_key="sk-app", max_retries=0
    ) as c:
        with pytest.raises(openai.InternalServerError):
            await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert sidecar.state.breakers.all()[0].state.name == "OPEN"


def probes(llm: SimulatedLLM) -> int:
    return sum(1 for r in llm.requests if r.method == "GET" and r.path == "/v1/models")


async def test_probes_close_an_open_circuit_without_user_traffic(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(breaking(llm, {"enabled": True, "intervalSeconds": 0.05}))
    await open_the_circuit(sidecar, llm)
    llm.enqueue(Fail(503))  # the first probe fails: the count starts again
    await wait_until(lambda: sidecar.state.breakers.all()[0].state.name == "CLOSED")
    assert probes(llm) == 3  # one failed, then successThreshold (2) answered
    _, log = await sidecar.admin("GET", "/admin/circuits/transitions")
    # What the operator's Event on the policy says about why the circuit closed.
    assert log["transitions"][-1]["reason"] == "closed by 2 passed health checks"
    async with openai.AsyncOpenAI(
        base_url=sidecar.openai_url, api_key="sk-app", max_retries=0
    ) as c:
        assert await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)


async def test_without_health_checks_an_open_circuit_stays_open(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(breaking(llm, {"enabled": False}))
    await open_the_circuit(sidecar, llm)
    sidecar.clock.advance(300)  # half its open time: nothing probes it meanwhile
    _, body = await sidecar.admin("GET", "/admin/circuits")
    assert body["circuits"][0]["state"] == "open" and probes(llm) == 0
