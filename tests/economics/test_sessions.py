"""Session reports: calls grouped by X-LLM-Session, totals, and suggestions with savings."""

from __future__ import annotations

from decimal import Decimal

import openai

from sluice_sidecar.economics.ledger import CallRecord
from sluice_sidecar.economics.sessions import MAX_GROUPS, SessionBook
from sluice_sidecar.economics.usage import Usage
from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import SimulatedLLM

JOB = {"X-LLM-Session": "render-42"}
SHORT = [{"role": "user", "content": "Outline scene one"}]
LONG = [{"role": "user", "content": "context " * 1500 + "Outline scene two"}]


def client(sidecar: SidecarHandle) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-app", max_retries=0)


async def test_session_report_with_suggestions(sidecar: SidecarHandle) -> None:
    async with client(sidecar) as c:
        for _ in range(3):  # the same request three times: two repeats
            await c.chat.completions.create(model="gpt-4o", messages=SHORT, extra_headers=JOB)
        await c.chat.completions.create(
            model="gpt-4o",
            messages=LONG,
            extra_headers=JOB | {"X-LLM-Operation": "SceneAnalysis"},
        )
        for i in range(10):
            await c.embeddings.create(
                model="text-embedding-3-small", input=[f"line {i}"], extra_headers=JOB
            )
        await c.chat.completions.create(model="gpt-4o", messages=SHORT)  # no session
    status, report = await sidecar.admin("GET", "/admin/sessions/render-42")
    assert status == 200
    assert report["totals"]["requests"] == 14
    assert set(report["byOperation"]) == {"Completion", "SceneAnalysis"}
    assert set(report["byModel"]) == {"gpt-4o", "text-embedding-3-small"}
    assert report["byProvider"]["sim"]["requests"] == 14
    first = report["calls"][0]
    assert first["model"] == "gpt-4o" and first["inputTokens"] > 0 and first["latencyMs"] >= 0
    assert first["retries"] == 0 and Decimal(first["costUSD"]) > 0 and first["at"] > 0
    kinds = {s["kind"]: s for s in report["suggestions"]}
    assert set(kinds) == {"enable-caching", "cheaper-model", "shorter-prompts", "batching"}
    assert Decimal(kinds["enable-caching"]["estimatedSavingsUSD"]) == 2 * Decimal(first["costUSD"])
    assert "gpt-4o-mini" in kinds["cheaper-model"]["message"]
    assert Decimal(kinds["cheaper-model"]["estimatedSavingsUSD"]) > 0
    savings = [Decimal(s["estimatedSavingsUSD"]) for s in report["suggestions"]]
    assert savings == sorted(savings, reverse=True)
    _, listing = await sidecar.admin("GET", "/admin/sessions")
    assert listing["sessions"][0]["session"] == "render-42"


async def test_cached_session_reports_its_hit_rate(llm: SimulatedLLM, sidecar_factory) -> None:
    sidecar = await sidecar_factory(policy(providers=[provider_for(llm)], cache={"enabled": True}))
    async with client(sidecar) as c:
        for _ in range(4):
            await c.chat.completions.create(
                model="gpt-4o", messages=SHORT, temperature=0, extra_headers=JOB
            )
    _, report = await sidecar.admin("GET", "/admin/sessions/render-42")
    assert report["cacheHitRate"] == 0.75
    assert Decimal(report["totals"]["savedUSD"]) == 3 * Decimal(report["totals"]["costUSD"])
    assert "enable-caching" not in {s["kind"] for s in report["suggestions"]}


async def test_unknown_session_is_404(sidecar: SidecarHandle) -> None:
    status, body = await sidecar.admin("GET", "/admin/sessions/nope")
    assert status == 404 and "nope" in body["error"]


def _record(session: str, n: int, model: str = "gpt-4o") -> CallRecord:
    return CallRecord(
        at=float(n),
        session=session,
        operation="Completion",
        provider="sim",
        model=model,
        usage=Usage(10, 5),
        cost=Decimal("0.001"),
        estimated_cost=Decimal("0.002"),
        cache="miss",
        saved=None,
        latency_ms=1.0,
        retries=0,
        status=200,
        fingerprint=f"{session}-{n}",
    )


def test_many_busy_sessions_stay_within_the_item_bound() -> None:
    book = SessionBook(max_items=5000)
    for s in range(50):
        for n in range(200):
            book.record(_record(f"job-{s}", n))
    kept = [row["session"] for row in book.ids()]
    assert book.items <= 5000
    assert book.items == sum(book._sessions[k].items for k in kept)
    assert kept[0] == "job-49" and "job-0" not in kept  # the least recently active went first
    latest = book.report("job-49")
    assert latest is not None and latest["callsListed"] == 200
    assert latest["totals"]["requests"] == 200


def test_a_session_of_many_models_folds_the_rest_into_other() -> None:
    book = SessionBook()
    for n in range(100):
        book.record(_record("job", n, model=f"model-{n}"))
    report = book.report("job")
    assert report is not None
    assert len(report["byModel"]) == MAX_GROUPS + 1 and "other" in report["byModel"]
    assert sum(row["requests"] for row in report["byModel"].values()) == 100
