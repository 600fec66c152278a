"""Workload-wide parameter suggestions (``GET /admin/suggestions``): max_tokens from the observed
output lengths, temperature for analytic operations, a cheaper model of the same vendor and a
cheaper vendor, each with its reasoning and estimated saving."""

from __future__ import annotations

from decimal import Decimal

import openai

from sluice_sidecar.economics.pricing import PriceTable
from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import SimulatedLLM

MESSAGES = [{"role": "user", "content": "Rate the importance of scene two"}]
CALLS = 24


async def calls(sidecar: SidecarHandle, n: int, **params: object) -> None:
    async with openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="k", max_retries=0) as c:
        for i in range(n):
            await c.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
                extra_headers={"X-LLM-Operation": "SceneAnalysis", "X-LLM-Session": f"job-{i}"},
                **params,  # type: ignore[arg-type]
            )


async def suggestions(sidecar: SidecarHandle) -> dict:
    status, body = await sidecar.admin("GET", "/admin/suggestions")
    assert status == 200
    return body


async def test_suggestions_from_the_calls_of_every_session(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(policy(providers=[provider_for(llm)]))
    await calls(sidecar, CALLS, max_tokens=2000, temperature=0.9)
    report = await suggestions(sidecar)
    assert report["calls"] == CALLS  # every session's calls, and the workload's as a whole
    by_kind = {s["kind"]: s for s in report["suggestions"]}
    assert set(by_kind) == {"max-tokens", "temperature", "cheaper-model", "switch-vendor"}
    assert {s["operation"] for s in report["suggestions"]} == {"SceneAnalysis"}

    longest = max(r.json.get("max_tokens", 0) for r in llm.requests)  # what was asked
    assert longest == 2000
    max_tokens = by_kind["max-tokens"]
    assert (max_tokens["current"], max_tokens["parameter"]) == ("2000", "maxTokens")
    assert int(max_tokens["suggested"]) <= 1000 and "99th percentile" in max_tokens["reasoning"]
    assert (
        by_kind["temperature"]["current"] == "0.9" and by_kind["temperature"]["suggested"] == "0.2"
    )

    _, usage = await sidecar.admin("GET", "/admin/usage")
    [row] = usage["series"]
    cost, tokens = Decimal(row["costUSD"]), (row["inputTokens"], row["outputTokens"])
    table = PriceTable({})
    mini = table.lookup(None, "gpt-4o-mini").cost(*tokens)  # type: ignore[union-attr]
    cheaper = by_kind["cheaper-model"]
    assert (cheaper["current"], cheaper["suggested"]) == ("gpt-4o", "gpt-4o-mini")
    assert Decimal(cheaper["estimatedSavingsUSD"]) == cost - mini
    vendor = by_kind["switch-vendor"]
    cheaper_vendors = ("gemini-2.5-pro", "mistral-large")  # claude-sonnet-4-5 costs more
    others = {m: table.lookup(None, m).cost(*tokens) for m in cheaper_vendors}  # type: ignore[union-attr]
    assert vendor["suggested"] == min(others, key=others.__getitem__)
    assert Decimal(vendor["estimatedSavingsUSD"]) == cost - others[vendor["suggested"]]
    savings = [Decimal(s["estimatedSavingsUSD"]) for s in report["suggestions"]]
    assert savings == sorted(savings, reverse=True)


async def test_few_or_well_bounded_calls_suggest_no_bound(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(policy(providers=[provider_for(llm)]))
    await calls(sidecar, 5, max_tokens=2000, temperature=0.1)
    kinds = {s["kind"] for s in (await suggestions(sidecar))["suggestions"]}
    assert "max-tokens" not in kinds and "temperature" not in kinds  # too few; already low
    await calls(sidecar, CALLS, max_tokens=60, temperature=0.1)
    kinds = {s["kind"] for s in (await suggestions(sidecar))["suggestions"]}
    assert "max-tokens" not in kinds  # the usual bound is already close to what calls use
