"""Budget-aware degradation: past its alert threshold, a budget moves matching operations to a
cheaper model and a leaner preset (the orchestrator's "cheaper preset near the limit"), says so
in the answer's headers and counts it."""

from __future__ import annotations

import anthropic
import openai

from tests.economics.conftest import budget
from tests.support.sidecar import SidecarHandle, anthropic_provider_for, policy, provider_for
from tests.support.simulator import SimulatedLLM

MESSAGES = [{"role": "user", "content": "Draft scene four"}]
PRICES = {
    "m": {"inputPer1M": 100_000_000, "outputPer1M": 100_000_000},  # $100 a token
    "cheap": {"inputPer1M": 0, "outputPer1M": 0},
}
DEGRADE = {"operations": ["Script*"], "model": "cheap", "maxTokens": 20, "temperature": 0.2}
SCRIPT = {"X-LLM-Operation": "ScriptGeneration"}


def degrading_budget(**degrade: object) -> dict:
    # Alert at $200 of $1,000,000: one call (at least a few tokens) passes it.
    return budget(
        limits={"costUSD": 1_000_000},
        thresholds={"warning": 0.0001, "alert": 0.0002},
        degrade=DEGRADE | degrade,
    )


def client(sidecar: SidecarHandle) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="k", max_retries=0)


async def test_past_the_alert_threshold_matching_calls_go_cheaper_and_say_so(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    sidecar = await economics_sidecar(
        policy(providers=[provider_for(llm)], pricing=PRICES), [degrading_budget()]
    )
    async with client(sidecar) as c:
        first = await c.chat.completions.with_raw_response.create(
            model="m", messages=MESSAGES, max_tokens=200, extra_headers=SCRIPT
        )
        assert "x-sluice-degraded" not in first.headers  # still under the threshold
        assert llm.requests[-1].json["model"] == "m"
        degraded = await c.chat.completions.with_raw_response.create(
            model="m", messages=MESSAGES, max_tokens=200, temperature=0.9, extra_headers=SCRIPT
        )
        other = await c.chat.completions.with_raw_response.create(
            model="m", messages=MESSAGES, max_tokens=200
        )
    assert degraded.headers["x-sluice-degraded"] == (
        "budget=tests/team; model=m->cheap; maxTokens=20; temperature=0.2"
    )
    sent = llm.requests[-2].json
    assert (sent["model"], sent["max_tokens"], sent["temperature"]) == ("cheap", 20, 0.2)
    assert degraded.parse().choices[0].message.content
    assert "x-sluice-degraded" not in other.headers  # Completion is not a Script* operation
    assert llm.requests[-1].json["model"] == "m"
    metrics = await sidecar.metrics_text()
    assert (
        'llm_budget_degradations_total{budget="tests/team",operation="ScriptGeneration"} 1.0'
        in metrics
    )
    _, usage = await sidecar.admin("GET", "/admin/usage")
    assert {r["model"] for r in usage["series"]} == {"m", "cheap"}  # priced as the cheap model


async def test_a_lower_max_tokens_of_the_caller_is_kept(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    sidecar = await economics_sidecar(
        policy(providers=[provider_for(llm)], pricing=PRICES),
        [degrading_budget(model=None, temperature=None)],
    )
    async with client(sidecar) as c:
        await c.chat.completions.create(
            model="m", messages=MESSAGES, max_tokens=100, extra_headers=SCRIPT
        )
        degraded = await c.chat.completions.with_raw_response.create(
            model="m", messages=MESSAGES, max_tokens=5, temperature=0.7, extra_headers=SCRIPT
        )
    assert degraded.headers["x-sluice-degraded"] == "budget=tests/team; maxTokens=5"
    sent = llm.requests[-1].json
    assert (sent["model"], sent["max_tokens"], sent["temperature"]) == ("m", 5, 0.7)


async def test_anthropic_calls_degrade_too(llm: SimulatedLLM, economics_sidecar) -> None:
    sidecar = await economics_sidecar(
        policy(providers=[anthropic_provider_for(llm, "claude")], pricing=PRICES),
        [degrading_budget(at="warning")],
    )
    async with anthropic.AsyncAnthropic(
        base_url=sidecar.anthropic_url, api_key="k", max_retries=0
    ) as c:
        await c.messages.create(model="m", max_tokens=100, messages=MESSAGES, extra_headers=SCRIPT)
        raw = await c.messages.with_raw_response.create(
            model="m", max_tokens=100, messages=MESSAGES, extra_headers=SCRIPT
        )
    assert raw.headers["x-sluice-degraded"].startswith("budget=tests/team; model=m->cheap")
    assert llm.requests[-1].json["model"] == "cheap" and llm.requests[-1].json["max_tokens"] == 20
