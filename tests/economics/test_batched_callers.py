"""Each caller of a merged embeddings call sees what it would have seen alone.

Its timing (Server-Timing's upstream part, and the wait for its batch as queue time), the
merged call's attempts and retries, its own deadline (another caller's shorter one does not cut
it short), and its share of what the provider may bill for attempts never answered.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import openai
import pytest

from sluice_sidecar.economics.usage import estimate_prompt_tokens
from tests.economics.conftest import budget
from tests.economics.test_unanswered_cost import settled
from tests.latency.test_timing_headers import server_timing
from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import Delay, Fail, Garbage, SimulatedLLM

MODEL = "text-embedding-3-small"
DOLLAR_PER_TOKEN = {"inputPer1M": 1_000_000, "outputPer1M": 1_000_000}
TEXTS = ["alpha beta", "gamma delta epsilon", "zeta", "eta theta iota kappa"]


def batching(max_wait_ms: int = 1000, size: int = len(TEXTS)) -> dict:
    """By default a batch closes when every text of TEXTS has joined it, however loaded."""
    return {"embeddings": {"enabled": True, "maxBatchSize": size, "maxWaitMs": max_wait_ms}}


def client(sidecar: SidecarHandle) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-app", max_retries=0)


def worst_case(text: str) -> Decimal:
    """One lost attempt of this caller's input, at a dollar a token (embeddings have no output)."""
    return Decimal(estimate_prompt_tokens({"input": text}))


async def each_caller(sidecar: SidecarHandle, texts: list[str], **headers: str) -> list:
    """Every text from its own caller at once; the raw responses, or the errors raised."""
    async with client(sidecar) as c:
        return await asyncio.gather(
            *(
                c.embeddings.with_raw_response.create(
                    model=MODEL, input=text, extra_headers=headers
                )
                for text in texts
            ),
            return_exceptions=True,
        )


async def priced_sidecar(economics_sidecar, llm: SimulatedLLM, **spec: object) -> SidecarHandle:
    spec.setdefault("retry", {"maxAttempts": 2, "baseDelayMs": 1, "maxDelayMs": 1})
    spec.setdefault("batching", batching())
    return await economics_sidecar(
        policy(
            providers=[provider_for(llm)],
            pricing={MODEL: DOLLAR_PER_TOKEN},
            **spec,
        ),
        [budget(limits={"costUSD": 1000})],
    )


def merged_inputs(llm: SimulatedLLM) -> list[list[str]]:
    return [r.json["input"] for r in llm.requests if r.path == "/v1/embeddings"]


async def test_each_batched_caller_is_timed_with_the_upstream_and_its_wait_for_the_batch(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(
        policy(providers=[provider_for(llm)], batching=batching(max_wait_ms=300, size=16))
    )
    llm.enqueue(Delay(0.1))
    responses = await each_caller(sidecar, TEXTS)
    assert len(merged_inputs(llm)) == 1
    queues = []
    for response in responses:
        timing = server_timing(response.headers["server-timing"])
        assert set(timing) == {"queue", "upstream", "cache", "total"}
        queue, upstream = float(timing["queue"]["dur"]), float(timing["upstream"]["dur"])
        assert upstream >= 100  # the merged call's attempt
        assert queue + upstream <= float(timing["total"]["dur"]) + 1
        assert response.headers["x-sluice-attempts"] == "1"
        queues.append(queue)
    assert max(queues) >= 250  # the first to arrive waited maxWaitMs (300) for the batch


async def test_a_failed_merged_call_tells_every_caller_its_attempts_and_retries(
    llm: SimulatedLLM, sidecar_factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sluice.calls")
    sidecar = await sidecar_factory(
        policy(
            providers=[provider_for(llm)],
            batching=batching(),
            retry={"maxAttempts": 2, "baseDelayMs": 1, "maxDelayMs": 1},
        )
    )
    llm.enqueue(Fail(503), Fail(503))
    errors = await each_caller(sidecar, TEXTS)
    assert len(merged_inputs(llm)) == 2  # one merged call and its retry
    for error in errors:
        assert isinstance(error, openai.InternalServerError) and error.status_code == 503
        assert "upstream" in server_timing(error.response.headers["server-timing"])
    logged = [r.call for r in caplog.records if r.name == "sluice.calls"]  # type: ignore[attr-defined]
    assert [(c["provider"], c["attempts"], c["retries"]) for c in logged] == [("sim", 2, 1)] * 4
    _, stats = await sidecar.admin("GET", "/admin/stats")
    row = next(r for r in stats["calls"] if r["provider"] == "sim")
    assert row["count"] == len(TEXTS) and row["averageRetries"] == 1.0


async def test_attempts_lost_by_a_merged_call_are_charged_to_each_caller_for_its_share(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    sidecar = await priced_sidecar(economics_sidecar, llm)
    llm.enqueue(Garbage(), Garbage())  # no valid answer to either attempt: both may be billed
    errors = await each_caller(sidecar, TEXTS)
    assert all(isinstance(e, openai.APIStatusError) and e.status_code == 502 for e in errors)
    spent, totals = await settled(sidecar)
    batch_worst_case = 2 * sum(worst_case(text) for text in TEXTS)
    assert totals["unanswered"]["calls"] == len(TEXTS)
    assert Decimal(totals["unanswered"]["possibleCostUSD"]) == batch_worst_case
    assert spent == batch_worst_case


async def test_a_batched_caller_keeps_its_own_deadline(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    """A caller with a short X-LLM-Timeout leaves (charged as cancelled, as alone); the others
    in its batch are not cut short by its deadline and get their answers."""
    sidecar = await priced_sidecar(economics_sidecar, llm)
    llm.enqueue(Delay(1.0))
    short, *others = TEXTS
    async with client(sidecar) as c:
        hurried = asyncio.create_task(
            c.embeddings.create(model=MODEL, input=short, extra_headers={"X-LLM-Timeout": "0.5"})
        )
        patient = await each_caller(sidecar, others)
        with pytest.raises(openai.APIStatusError) as caught:
            await hurried
    assert caught.value.status_code == 504
    assert all(not isinstance(r, Exception) for r in patient), patient
    assert merged_inputs(llm) == [TEXTS]
    spent, totals = await settled(sidecar)
    assert totals["unanswered"]["cancelledCalls"] == 1
    answered = Decimal(totals["costUSD"])
    assert spent == answered + worst_case(short)


async def test_a_caller_that_leaves_before_its_batch_is_sent_sends_nothing(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    sidecar = await priced_sidecar(economics_sidecar, llm, batching=batching(max_wait_ms=500))
    gone, *others = TEXTS
    async with client(sidecar) as c:
        with pytest.raises(openai.APIStatusError) as caught:
            # Gone at 50 ms, before its batch closes (maxWaitMs 500, nobody else yet).
            await c.embeddings.create(
                model=MODEL, input=gone, extra_headers={"X-LLM-Timeout": "0.05"}
            )
    assert caught.value.status_code == 504
    answers = await each_caller(sidecar, others)
    assert all(not isinstance(r, Exception) for r in answers), answers
    assert merged_inputs(llm) == [others]
    spent, totals = await settled(sidecar)
    assert totals["unanswered"] == {
        "calls": 0,
        "cancelledCalls": 0,
        "attempts": 0,
        "possibleCostUSD": "0",
    }
    assert spent == Decimal(totals["costUSD"])
