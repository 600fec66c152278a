"""Budget arithmetic: reservations, settlement, refusals, the state file form."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice_sidecar.contract.budget_maths import build_rules
from sluice_sidecar.contract.economics import CompiledBudget
from sluice_sidecar.economics.budgets import BudgetLedger, MemoryBudgetStore
from sluice_sidecar.economics.state_file import StateFile
from sluice_sidecar.errors import BudgetExceeded
from sluice_sidecar.observability.prometheus import Metrics
from tests.support.waiting import wait_until

NOW = dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC)


def rules(**limits: object) -> tuple:
    spec = CompiledBudget.model_validate({"namespace": "ns", "name": "b", "limits": limits})
    return build_rules([spec])


def ledger() -> BudgetLedger:
    return BudgetLedger(MemoryBudgetStore(), now=lambda: NOW)


money = st.decimals(min_value=0, max_value=50, places=4, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(
    limit=st.decimals(min_value=1, max_value=500, places=2),
    calls=st.lists(st.tuples(money, st.floats(min_value=0, max_value=1)), max_size=60),
    interleave=st.integers(min_value=1, max_value=10),
)
async def test_concurrent_reservations_never_overspend(limit, calls, interleave) -> None:
    """Admit in waves of ``interleave`` before settling any; actual cost <= estimate."""
    book = ledger()
    budget = rules(costUSD=limit)
    pending = []
    for estimate, share in calls:
        try:
            held = await book.admit(budget, estimate, 0, None)
        except BudgetExceeded:
            held = None
        if held is not None:
            pending.append((held, (estimate * Decimal(share)).quantize(Decimal("0.0001"))))
        if len(pending) >= interleave:
            for held_, actual in pending:
                book.settle(held_, actual, 0)
            pending.clear()
    for held_, actual in pending:
        book.settle(held_, actual, 0)
    counters = book.store.get("ns/b", "m:2026-11")  # type: ignore[attr-defined]
    assert counters.spent <= limit
    assert counters.reserved_cost == 0


async def test_refusal_names_the_budget_and_rolls_back_other_reservations() -> None:
    store = MemoryBudgetStore()
    book = BudgetLedger(store, now=lambda: NOW)
    generous = CompiledBudget.model_validate({"name": "a", "limits": {"costUSD": 100}})
    tight = CompiledBudget.model_validate({"name": "z", "limits": {"tokens": 10}})
    both = build_rules([generous, tight])
    with pytest.raises(BudgetExceeded) as caught:
        await book.admit(both, Decimal(5), 11, None)
    assert caught.value.details["budget"] == "default/z"
    assert caught.value.details["limitKind"] == "tokens"
    assert store.get("default/a", "m:2026-11").reserved_cost == 0


async def test_exhausted_budget_refuses_even_unpriced_calls() -> None:
    book = ledger()
    budget = rules(costUSD=1)
    [held] = await book.admit(budget, Decimal(1), 0, None)
    book.settle([held], Decimal(1), 0)
    with pytest.raises(BudgetExceeded):
        await book.admit(budget, Decimal(0), 0, None)


async def test_external_spend_counts() -> None:
    store = MemoryBudgetStore()
    book = BudgetLedger(store, now=lambda: NOW)
    store.note_external("ns/b", "m:2026-11", Decimal(9), 0)
    with pytest.raises(BudgetExceeded):
        await book.admit(rules(costUSD=10), Decimal(2), 0, None)


def test_a_state_file_written_before_session_tokens_still_loads() -> None:
    store = MemoryBudgetStore()
    store.load({"ns/b|d:2026-11-22": {"spent": "3", "tokens": 9, "sessions": {"job": "0.5"}}})
    assert store.get("ns/b", "d:2026-11-22").sessions["job"] == [Decimal("0.5"), 0, 0, 0]


def test_state_file_form_round_trips() -> None:
    store = MemoryBudgetStore()
    c = store.get("ns/b", "d:2026-11-22")
    c.spent, c.tokens = Decimal("1.25"), 7
    c.sessions["job"] = [Decimal("0.5"), Decimal(0), Decimal(40), Decimal(0)]
    again = MemoryBudgetStore()
    again.load(store.dump())
    restored = again.get("ns/b", "d:2026-11-22")
    assert (restored.spent, restored.tokens) == (Decimal("1.25"), 7)
    assert restored.sessions["job"] == [Decimal("0.5"), 0, 40, 0]


BAD_SESSION = "job-\udcff"  # what a non-UTF-8 header byte decodes to: a lone surrogate


async def test_state_writer_survives_a_session_id_it_cannot_encode(tmp_path, caplog) -> None:
    metrics = Metrics()
    errors = metrics.state_write_errors
    store = MemoryBudgetStore()
    book = BudgetLedger(store, now=lambda: NOW)
    state = StateFile(tmp_path, store, on_error=lambda r: errors.labels(r).inc(), interval_s=0.01)
    state.start()
    budget = rules(costUSD=100)
    try:
        for session in (BAD_SESSION, "job-ok"):
            book.settle(await book.admit(budget, Decimal(1), 1, session), Decimal(2), 3)
            await wait_until(lambda: (tmp_path / "budgets.json").exists())
        book.settle(await book.admit(budget, Decimal(1), 1, BAD_SESSION), Decimal(5), 3)

        def saved() -> dict:
            path = tmp_path / "budgets.json"
            return next(iter(orjson.loads(path.read_bytes())["periods"].values()))

        await wait_until(lambda: saved()["spent"] == "9")
    finally:
        await state.close()
    assert saved()["sessions"] == {"job-ok": ["2", 3]}
    assert errors.labels("encode")._value.get() >= 2
    logged = [r for r in caplog.records if "session id(s) left out" in r.getMessage()]
    assert len(logged) == 1, "logged once, not at every write"


async def test_a_new_period_forgets_the_sessions_of_earlier_ones() -> None:
    clock = [NOW]
    book = BudgetLedger(MemoryBudgetStore(), now=lambda: clock[0])
    spec = {"namespace": "ns", "name": "b", "period": "daily", "limits": {"costUSD": 100}}
    daily = build_rules([CompiledBudget.model_validate(spec)])
    for day in range(3):
        clock[0] = NOW + dt.timedelta(days=day)
        for n in range(50):
            book.settle(await book.admit(daily, Decimal(1), 1, f"job-{n}"), Decimal(1), 1)
    store = book.store
    assert isinstance(store, MemoryBudgetStore)
    rows = {key: c for (_, key), c in store.periods.items()}
    assert [len(c.sessions) for c in rows.values()] == [0, 0, 50]  # only today's kept
    assert [c.spent for c in rows.values()] == [Decimal(50)] * 3  # every day's total kept
    saved = store.dump()
    assert sum(len(row["sessions"]) for row in saved.values()) == 50
