"""The cumulative usage ledger behind GET /admin/usage."""

from __future__ import annotations

from decimal import Decimal

from sluice_sidecar.economics import ledger
from sluice_sidecar.economics.ledger import CallRecord, UsageLedger
from sluice_sidecar.economics.usage import Usage


def record(**fields: object) -> CallRecord:
    base: dict[str, object] = {
        "at": 0.0,
        "session": None,
        "operation": "Completion",
        "provider": "openai",
        "model": "gpt-4o",
        "usage": Usage(10, 5),
        "cost": Decimal("0.01"),
        "estimated_cost": None,
        "cache": "miss",
        "saved": None,
        "latency_ms": 1.0,
        "retries": 0,
        "status": 200,
    }
    return CallRecord(**(base | fields))  # type: ignore[arg-type]


def test_counters_only_grow_and_keep_unknowns_apart() -> None:
    book = UsageLedger()
    book.record(record())
    book.record(record(usage=None, cost=None))
    book.record(record(cost=None))
    book.record(record(cache="hit", cost=None, saved=Decimal("0.02")))
    totals = book.snapshot()["totals"]
    assert totals["requests"] == 4
    assert totals["inputTokens"] == 20 and totals["outputTokens"] == 10
    assert totals["costUSD"] == "0.01" and totals["savedUSD"] == "0.02"
    assert totals["unknownUsageCalls"] == 1 and totals["unpricedCalls"] == 1
    assert totals["cacheHits"] == 1


def test_series_are_bounded(monkeypatch) -> None:
    monkeypatch.setattr(ledger, "MAX_KEYS", 3)
    book = UsageLedger()
    for i in range(10):
        book.record(record(model=f"m{i}"))
    series = book.snapshot()["series"]
    assert len(series) == 3 and series[-1]["model"] == "other"
    assert sum(row["requests"] for row in series) == 10
