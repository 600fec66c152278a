"""Synthetic traffic that gives every dashboard panel something to show.

Two sidecars, as two workloads: "studio" (two providers, retries, a breaker, fallback, the
cache, embeddings batching, budgets and a degradation, streams, a deadline, a latency anomaly,
a boundary limit) and "batch" (a slow provider behind the priority queue, with coalescing, a
stream cut short and an attempt dropped unanswered). Each round
uses its own prompts, so a second round adds misses, hits, merges and trips of its own and the
counters' rates are above zero.
"""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from sluice_sidecar.contract import LlmPolicy, compile_policies
from sluice_sidecar.contract.model import LlmBudget, SidecarConfig
from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import BreakStream, Delay, Fail, Hang, SimulatedLLM
from tests.support.waiting import wait_until

NEAR_LIMIT_USD = 10
NEAR_EXTERNAL_USD = "9.30"  # the other replicas' spend the operator pushed: 93 % used
# Over the predicted top (a few ms from the calls before it) by more than the anomaly floor (1 s).
ANOMALY_DELAY_S = 1.25


def budget(name: str, **spec: Any) -> LlmBudget:
    document = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "LlmBudget",
        "metadata": {"name": name, "namespace": "tests"},
        "spec": spec,
    }
    return LlmBudget.model_validate(document)


def studio_config(primary: SimulatedLLM, backup: SimulatedLLM) -> SidecarConfig:
    document = policy(
        providers=[provider_for(primary), provider_for(backup)],
        retry={"strategy": "exponential", "baseDelayMs": 1, "maxDelayMs": 5, "maxAttempts": 2},
        circuitBreaker={"failureThreshold": 2, "openSeconds": 30},
        cache={"enabled": True, "maxEntries": 2},
        batching={"embeddings": {"enabled": True, "maxBatchSize": 4, "maxWaitMs": 1000}},
        operations={"Slow": {"timeoutSeconds": 0.4, "warningThreshold": 0.5}, "Drafts": {}},
    )
    budgets = [
        # Past its alert threshold once the external spend is pushed: Drafts calls degrade.
        budget(
            "near",
            limits={"costUSD": NEAR_LIMIT_USD, "tokens": 10_000_000},  # tokens: far from it
            enforcement="soft",
            degrade={"operations": ["Drafts"], "maxTokens": 20},
        ),
        # Any gpt-4o-mini call's worst case is over it: refused (429) before it is sent.
        budget("tight", scope={"model": "gpt-4o-mini"}, limits={"costUSD": "0.000001"}),
    ]
    return compile_policies([LlmPolicy.model_validate(document)], budgets)


def batch_config(slow: SimulatedLLM) -> SidecarConfig:
    document = policy(
        providers=[provider_for(slow)],
        cache={"enabled": True},
        queue={"maxConcurrent": 1, "maxLength": 1, "maxWaitMs": 5000},
    )
    return compile_policies([LlmPolicy.model_validate(document)])


def client(sidecar: SidecarHandle) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-app", max_retries=0)


async def chat(c: openai.AsyncOpenAI, text: str, **extra: Any) -> Any:
    params: dict[str, Any] = {"model": "gpt-4o", "temperature": 0} | extra
    return await c.chat.completions.create(messages=[{"role": "user", "content": text}], **params)


async def push_external_spend(studio: SidecarHandle) -> None:
    """What the operator does for a budget shared by replicas (PUT /admin/budgets/external)."""
    _, body = await studio.admin("GET", "/admin/budgets")
    [near] = [row for row in body["budgets"] if row["budget"] == "tests/near"]
    row = {
        "budget": "tests/near",
        "periodStart": near["periodStart"],
        "spentUSD": NEAR_EXTERNAL_USD,
    }
    status, _ = await studio.admin("PUT", "/admin/budgets/external", json={"budgets": [row]})
    assert status == 200


async def studio_round(
    studio: SidecarHandle, primary: SimulatedLLM, backup: SimulatedLLM, n: int
) -> None:
    await studio.admin("POST", "/admin/circuits/reset")
    async with client(studio) as c:
        for i in range(3):  # three misses; the cache keeps two, so one is evicted
            await chat(c, f"round {n} scene {i}")
        await chat(c, f"round {n} scene 2")  # a hit
        primary.enqueue(Delay(ANOMALY_DELAY_S))  # far slower than the calls before it
        await chat(c, f"round {n} lags")
        degraded = await c.chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": f"round {n} draft"}],
            extra_headers={"X-LLM-Operation": "Drafts"},
        )
        assert "maxTokens=20" in degraded.headers["x-sluice-degraded"]
        stream = await chat(c, f"round {n} stream", stream=True, temperature=0.9)
        assert [chunk async for chunk in stream]
        primary.enqueue(Fail(429, retry_after=0.01))  # retried on the same provider
        await chat(c, f"round {n} retried")
        primary.enqueue(Fail(503), Fail(503))  # two failures open primary's breaker
        await chat(c, f"round {n} falls back")
        await chat(c, f"round {n} skips the open circuit")
        backup.enqueue(Hang())
        with pytest.raises(openai.APIStatusError) as slow:
            await chat(c, f"round {n} too slow", extra_headers={"X-LLM-Operation": "Slow"})
        assert slow.value.status_code == 504
        with pytest.raises(openai.RateLimitError) as over:
            await chat(c, f"round {n} over budget", model="gpt-4o-mini", max_tokens=50)
        assert over.value.code == "budget_exceeded"
        embeddings = [
            c.embeddings.create(model="text-embedding-3-small", input=[f"round {n} text {i}"])
            for i in range(4)
        ]
        await asyncio.gather(*embeddings)  # one merged call of four
    # A body nested past the boundary's 64 levels: refused with 400, a limit hit.
    deep = '{"model": "gpt-4o", "messages": ' + "[" * 70 + "]" * 70 + "}"
    async with studio.http.post(studio.openai_url + "/chat/completions", data=deep) as answer:
        assert answer.status == 400


async def batch_round(batch: SidecarHandle, slow: SimulatedLLM, n: int) -> None:
    queue = batch.state.queue
    async with client(batch) as c:
        # Five identical calls in flight: one goes upstream, four share its answer.
        await asyncio.gather(*(chat(c, f"round {n} shared") for _ in range(5)))
        busy = asyncio.create_task(chat(c, f"round {n} busy"))
        await wait_until(lambda: queue.in_flight == 1)
        waiting = asyncio.create_task(chat(c, f"round {n} waits"))
        await wait_until(lambda: queue.depth == 1)
        with pytest.raises(openai.RateLimitError) as full:
            await chat(c, f"round {n} no room")
        assert full.value.code == "queue_full"
        await asyncio.gather(busy, waiting)
        slow.enqueue(BreakStream())  # dropped without an answer (it may be billed), retried
        await chat(c, f"round {n} dropped once")
        slow.enqueue(BreakStream(after_chunks=2))  # charged on its estimate: usage never came
        with pytest.raises(openai.APIError):
            stream = await chat(c, f"round {n} cut", stream=True, temperature=0.9)
            assert [chunk async for chunk in stream]
