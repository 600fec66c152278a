"""Latency prediction through a real sidecar: the answer header, /admin/estimate, anomalies."""

from __future__ import annotations

import openai

from sluice_sidecar.pipeline.latency import ANOMALY_FLOOR_S
from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import Delay, SimulatedLLM

MESSAGES = [{"role": "user", "content": "Plan a short video"}]


def client(sidecar: SidecarHandle) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-app", max_retries=0)


def anomaly_policy(llm: SimulatedLLM) -> dict:
    return policy(providers=[provider_for(llm)], latency={"anomalyFactor": 2})


async def ten_calls(c: openai.AsyncOpenAI) -> None:
    for _ in range(10):
        await c.chat.completions.create(model="m", messages=MESSAGES)


async def test_every_answer_carries_an_estimate_and_history_builds(
    sidecar: SidecarHandle,
) -> None:
    async with client(sidecar) as c:
        raw = await c.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
        assert int(raw.headers["x-sluice-estimated-ms"]) > 0  # from the prior at first
        for _ in range(11):
            await c.chat.completions.create(model="m", messages=MESSAGES)
        stream = await c.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        [chunk async for chunk in stream]
    status, body = await sidecar.admin(
        "GET", "/admin/estimate?provider=sim&operation=Completion&promptTokens=20"
    )
    assert status == 200 and body["points"] == 13
    assert 0.6 <= body["confidence"] <= 0.8 and body["message"].startswith("usually takes")
    low, high = body["rangeMs"]
    assert low <= body["estimatedMs"] <= high
    status, _ = await sidecar.admin("GET", "/admin/estimate?provider=sim")
    assert status == 400


async def test_a_call_far_slower_than_predicted_is_an_anomaly(
    llm: SimulatedLLM, sidecar_factory, caplog
) -> None:
    sidecar = await sidecar_factory(anomaly_policy(llm))
    async with client(sidecar) as c:
        await ten_calls(c)
        _, before = await sidecar.admin(
            "GET", "/admin/estimate?provider=sim&operation=Completion&promptTokens=20"
        )
        top_s = before["rangeMs"][1] / 1000
        llm.enqueue(Delay(max(top_s * 2, top_s + ANOMALY_FLOOR_S) + 0.2))
        await c.chat.completions.create(model="m", messages=MESSAGES)
    metrics = await sidecar.metrics_text()
    assert 'llm_latency_anomalies_total{operation="Completion",provider="sim"} 1.0' in metrics
    assert "over 2.0x the predicted" in caplog.text


async def test_jitter_of_a_fast_upstream_is_no_anomaly(
    llm: SimulatedLLM, sidecar_factory, caplog
) -> None:
    """Milliseconds against a predicted 0.0-0.0 s are many times the prediction, and nothing."""
    sidecar = await sidecar_factory(anomaly_policy(llm))
    async with client(sidecar) as c:
        await ten_calls(c)  # the history: calls of a few milliseconds
        for _ in range(5):
            llm.enqueue(Delay(0.05))  # far over 2x a call of a few milliseconds
            await c.chat.completions.create(model="m", messages=MESSAGES)
    metrics = await sidecar.metrics_text()
    assert "llm_latency_anomalies_total{" not in metrics
    assert "the predicted" not in caplog.text
