"""GET /admin/circuits/transitions on a real sidecar: the state changes real calls caused,
numbered, so a poller asks for what came after the last one it saw."""

from __future__ import annotations

import openai
import pytest

from tests.support.sidecar import policy, provider_for
from tests.support.simulator import Fail, SimulatedLLM

MESSAGES = [{"role": "user", "content": "Caption the thumbnail"}]


async def test_failing_calls_open_the_circuit_and_the_log_says_why(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(
        policy(
            providers=[provider_for(llm)],
            retry={"maxAttempts": 1},
            circuitBreaker={"failureThreshold": 2, "failureRateThreshold": None},
        )
    )
    status, empty = await sidecar.admin("GET", "/admin/circuits/transitions")
    assert status == 200 and empty["transitions"] == [] and empty["lastSequence"] == 0
    llm.enqueue(Fail(503), Fail(503))
    async with openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="k", max_retries=0) as c:
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    status, log = await sidecar.admin("GET", "/admin/circuits/transitions?after=0")
    assert status == 200
    assert [
        (t["provider"], t["model"], t["from"], t["to"], t["reason"]) for t in log["transitions"]
    ] == [("sim", "gpt-4o", "closed", "open", "2 consecutive failures")]
    assert log["logId"] == empty["logId"] and log["lastSequence"] == 1 and log["missed"] == 0
    _, later = await sidecar.admin("GET", "/admin/circuits/transitions?after=1")
    assert later["transitions"] == []


async def test_a_bad_after_is_the_callers_error(sidecar_factory, llm: SimulatedLLM) -> None:
    sidecar = await sidecar_factory(policy(providers=[provider_for(llm)]))
    for bad in ("-1", "many", str(2**63)):
        status, body = await sidecar.admin("GET", f"/admin/circuits/transitions?after={bad}")
        assert status == 400 and "after" in str(body), bad
