"""Folding sidecars' cumulative spend into a budget's ledger (spend.py): restarts, retired pods,
final reports and new periods."""

from __future__ import annotations

from decimal import Decimal

from sluice_operator.spend import MAX_RETIRED_PODS, BudgetSpend, Spend

PERIOD = "2026-12-01T00:00:00+00:00"


def usd(value: str, tokens: int = 0) -> Spend:
    return Spend(Decimal(value), tokens)


def test_observing_the_same_counter_twice_counts_it_once() -> None:
    spend = BudgetSpend(PERIOD)
    spend.observe("a", usd("1.5", 10))
    spend.observe("a", usd("1.5", 10))
    spend.observe("b", usd("0.5", 5))
    assert spend.total == usd("2.0", 15)


def test_a_counter_that_restarted_keeps_what_it_had_spent() -> None:
    spend = BudgetSpend(PERIOD)
    spend.observe("a", usd("3", 30))
    spend.observe("a", usd("1", 10))  # the sidecar restarted without its state file
    assert spend.retired == usd("3", 30)
    assert spend.total == usd("4", 40)


def test_a_pod_gone_without_a_report_keeps_its_last_seen_spend() -> None:
    spend = BudgetSpend(PERIOD)
    spend.observe("a", usd("2", 20))
    spend.retire("a")
    assert spend.pods == {}
    assert spend.retired_pods == {"a": usd("2", 20)}
    assert spend.total == usd("2", 20)
    spend.observe("a", usd("9", 90))  # a late row from a retired pod changes nothing
    assert spend.total == usd("2", 20)


def test_a_final_report_after_retirement_adds_only_the_difference() -> None:
    spend = BudgetSpend(PERIOD)
    spend.observe("a", usd("2", 20))
    spend.retire("a")
    spend.retire("a", usd("2.5", 25))  # its final report arrives after it vanished
    assert spend.total == usd("2.5", 25)
    spend.retire("a", usd("2.5", 25))  # the same report again
    spend.retire("a", usd("1", 1))  # a smaller one is older news
    assert spend.total == usd("2.5", 25)


def test_a_final_report_below_the_last_seen_counter_means_a_restart() -> None:
    spend = BudgetSpend(PERIOD)
    spend.observe("a", usd("3", 30))
    spend.retire("a", usd("1", 10))  # restarted, spent 1 more, then stopped
    assert spend.total == usd("4", 40)


def test_a_final_report_of_an_unseen_pod_counts_in_full() -> None:
    spend = BudgetSpend(PERIOD)
    spend.retire("short-lived", usd("0.25", 3))
    assert spend.total == usd("0.25", 3)
    spend.retire("never-spent")
    assert "never-spent" not in spend.retired_pods


def test_retired_pods_are_bounded_but_their_spend_is_kept() -> None:
    spend = BudgetSpend(PERIOD)
    for n in range(MAX_RETIRED_PODS + 10):
        spend.retire(f"pod-{n}", usd("1"))
    assert len(spend.retired_pods) == MAX_RETIRED_PODS
    assert "pod-0" not in spend.retired_pods
    assert spend.total == usd(str(MAX_RETIRED_PODS + 10))


def test_others_is_everyone_but_the_pod() -> None:
    spend = BudgetSpend(PERIOD)
    spend.observe("a", usd("1", 1))
    spend.observe("b", usd("2", 2))
    spend.retire("b")
    spend.observe("c", usd("4", 4))
    assert spend.others("a") == usd("6", 6)
    assert spend.others("unknown") == usd("7", 7)


def test_the_ledger_round_trips_through_the_status() -> None:
    spend = BudgetSpend(PERIOD)
    spend.observe("a", usd("1.000001", 1))
    spend.observe("b", usd("2", 2))
    spend.retire("b")
    status = {"periodStart": PERIOD, "ledger": spend.as_status()}
    assert BudgetSpend.from_status(status, PERIOD) == spend


def test_a_new_period_starts_from_zero() -> None:
    spend = BudgetSpend(PERIOD)
    spend.observe("a", usd("5", 5))
    status = {"periodStart": PERIOD, "ledger": spend.as_status()}
    fresh = BudgetSpend.from_status(status, "2027-01-01T00:00:00+00:00")
    assert fresh.total == Spend() and fresh.pods == {}
