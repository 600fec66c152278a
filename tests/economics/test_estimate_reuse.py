"""Estimates remembered for repeated requests never outlive the prices they were made with.

The metering stage estimates a request it has seen before (a cache hit's, every time) from
what it remembered for the same bytes; new prices, from a new configuration or a price file
that changed under the running one, must still give a new estimate. What the budget reserves
is the estimate, so ``x-sluice-budget-remaining`` shows it: with nothing spent, the limit less
the estimated cost.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from sluice_sidecar.contract import LlmBudget, LlmPolicy, compile_policies
from sluice_sidecar.economics import pricing
from tests.economics.conftest import budget
from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import SimulatedLLM

MESSAGES = [{"role": "user", "content": "Name three rivers"}]
LIMIT = 1_000_000
BUDGET = budget(limits={"costUSD": LIMIT}, period="daily")
FREE = {"inputPer1M": 0, "outputPer1M": 0}
DOLLAR_PER_TOKEN = {"inputPer1M": 1_000_000, "outputPer1M": 1_000_000}


async def remaining(sidecar: SidecarHandle) -> Decimal:
    """The same request each time: what the budget has left after reserving its estimate."""
    async with openai.AsyncOpenAI(
        base_url=sidecar.openai_url, api_key="sk-app", max_retries=0
    ) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="house-model", messages=MESSAGES, max_tokens=10, temperature=0.7
        )
    return Decimal(raw.headers["x-sluice-budget-remaining"])


def priced(llm: SimulatedLLM, price: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return policy(providers=[provider_for(llm)], pricing={"house-model": price}, **spec)


async def test_a_new_configuration_estimates_a_repeated_request_again(
    llm: SimulatedLLM, economics_sidecar
) -> None:
    sidecar = await economics_sidecar(priced(llm, FREE), [BUDGET])
    assert [await remaining(sidecar) for _ in range(2)] == [LIMIT, LIMIT]  # free: nothing held
    dear = LlmPolicy.model_validate(priced(llm, DOLLAR_PER_TOKEN))
    sidecar.state.apply(compile_policies([dear], [LlmBudget.model_validate(BUDGET)]), source="t")
    estimated = LIMIT - await remaining(sidecar)
    assert estimated > 10  # the prompt and the 10 tokens of output, at a dollar each


async def test_a_changed_price_file_estimates_a_repeated_request_again(
    llm: SimulatedLLM, economics_sidecar, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pricing, "FILE_CHECK_S", 0)  # check at every look-up
    path = tmp_path / "prices.yaml"
    path.write_text(json.dumps({"asOf": "2026-12-01", "models": {"house-model": FREE}}))
    document = policy(providers=[provider_for(llm)], pricingFile=str(path))
    sidecar = await economics_sidecar(document, [BUDGET])
    assert [await remaining(sidecar) for _ in range(2)] == [LIMIT, LIMIT]
    replaced = tmp_path / "next.yaml"  # swapped in by rename, as the kubelet does
    replaced.write_text(
        json.dumps({"asOf": "2026-12-02", "models": {"house-model": DOLLAR_PER_TOKEN}})
    )
    replaced.replace(path)
    assert LIMIT - await remaining(sidecar) > 10
