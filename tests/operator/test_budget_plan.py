"""Budget aggregation planning (budget_plan.py): usage rows in, statuses, Events, pushes out."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sluice_operator.budget_plan import (
    CollectionPlan,
    budget_feedback,
    plan_collection,
    plan_final_report,
)
from sluice_operator.reading import group_workloads
from sluice_operator.resources import valid_budgets
from sluice_operator.status import BUDGET_STATES, Condition
from sluice_sidecar.contract.usage import FinalUsage, SpendRow
from tests.operator.fake_kube import budget, deployment, pod

NOW = dt.datetime(2026, 12, 15, 12, tzinfo=dt.UTC)
PERIOD = "2026-12-01T00:00:00+00:00"
STUDIO = {"matchLabels": {"app": "studio"}}
IDENTITY = "team-a/monthly"


def row(spent: str, tokens: int = 0, period: str = PERIOD, budget: str = IDENTITY) -> SpendRow:
    wire = {"budget": budget, "periodStart": period, "spentUSD": spent, "tokens": tokens}
    return SpendRow.model_validate(wire)


def collect(
    budgets: list[dict[str, Any]],
    usage: dict[str, list[SpendRow]],
    pods: list[dict[str, Any]],
    now: dt.datetime = NOW,
) -> CollectionPlan:
    workloads = group_workloads([deployment("studio", {"app": "studio"})], pods, {})
    rows = {uid: {r.budget: r for r in rs} for uid, rs in usage.items()}
    return plan_collection(valid_budgets(budgets), workloads, rows, now)


def monthly(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return budget("monthly", {"selector": STUDIO, "limits": {"costUSD": 10}, **spec}, status=status)


def test_two_replicas_are_summed_and_each_told_what_the_other_spent() -> None:
    plan = collect(
        [monthly()],
        {"uid-a": [row("3", 30)], "uid-b": [row("1.5", 15)]},
        [pod("a", "studio"), pod("b", "studio")],
    )
    (update,) = plan.updates
    assert update.patch is not None
    assert (update.patch["spentUSD"], update.patch["tokens"]) == ("4.500000", 45)
    assert (update.patch["utilization"], update.patch["state"]) == ("45%", "OK")
    assert update.patch["limitUSD"] == "10"
    assert update.patch["resetsAt"] == "2027-01-01T00:00:00+00:00"
    told = {push.pod["metadata"]["name"]: [r.as_json() for r in push.rows] for push in plan.pushes}
    assert told == {
        "a": [{"budget": IDENTITY, "periodStart": PERIOD, "spentUSD": "1.5", "tokens": 15}],
        "b": [{"budget": IDENTITY, "periodStart": PERIOD, "spentUSD": "3.0", "tokens": 30}],
    }


def test_states_follow_the_budgets_thresholds_with_an_event_per_change() -> None:
    thresholds = {"warning": 0.5, "alert": 0.8}
    seen = []
    status = None
    for spent in ("4", "5", "8.5", "10", "10"):
        plan = collect(
            [monthly(status, thresholds=thresholds)], {"uid-a": [row(spent)]}, [pod("a", "studio")]
        )
        (update,) = plan.updates
        status = {**(status or {}), **update.status.patch()}
        seen.append((update.status.state, [e.reason for e in update.events]))
    assert seen == [
        ("OK", []),
        ("Warning", ["BudgetWarning"]),
        ("Alert", ["BudgetAlert"]),
        ("Exceeded", ["BudgetExceeded"]),
        ("Exceeded", []),
    ]
    assert {state for state, _ in seen} <= set(BUDGET_STATES)


def test_the_tightest_limit_sets_utilization() -> None:
    plan = collect(
        [monthly(limits={"costUSD": 100, "tokens": 1000})],
        {"uid-a": [row("1", 950)]},
        [pod("a", "studio")],
    )
    assert plan.updates[0].status.utilization == "95%"
    assert plan.updates[0].status.state == "Alert"  # default thresholds 0.75 / 0.9


def test_a_vanished_pod_keeps_its_spend_and_is_nulled_from_the_ledger() -> None:
    first = collect([monthly()], {"uid-a": [row("2")]}, [pod("a", "studio")])
    status = first.updates[0].status.patch()
    second = collect([monthly(status)], {}, [])
    (update,) = second.updates
    assert update.status.spent_usd == "2.000000"
    assert update.patch is not None
    assert update.patch["ledger"]["pods"] == {"uid-a": None}  # merge patch removes the key
    assert update.patch["ledger"]["retiredPods"] == {"uid-a": {"spentUSD": "2", "tokens": 0}}
    assert second.pushes == []


def test_an_unchanged_status_is_not_written_again() -> None:
    first = collect([monthly()], {"uid-a": [row("2")]}, [pod("a", "studio")])
    status = first.updates[0].status.patch()
    again = collect([monthly(status)], {"uid-a": [row("2")]}, [pod("a", "studio")])
    assert again.updates[0].patch is None
    assert again.updates[0].events == []


def test_a_new_period_resets_the_spend_with_an_event() -> None:
    first = collect([monthly()], {"uid-a": [row("9.5")]}, [pod("a", "studio")])
    status = first.updates[0].status.patch()
    assert status["state"] == "Alert"
    january = dt.datetime(2027, 1, 1, 0, 0, 5, tzinfo=dt.UTC)
    # The sidecar still reports December for a moment: that row is not this period's.
    plan = collect([monthly(status)], {"uid-a": [row("9.5")]}, [pod("a", "studio")], january)
    (update,) = plan.updates
    assert update.status.period_start == "2027-01-01T00:00:00+00:00"
    assert update.status.spent_usd == "0.000000"
    assert [e.reason for e in update.events] == ["PeriodReset", "BudgetOK"]
    assert update.patch is not None
    assert update.patch["pastPeriods"] == [
        {"periodStart": "2026-12-01T00:00:00+00:00", "spentUSD": "9.500000", "tokens": 0}
    ]


def test_past_periods_are_kept_newest_first_and_bounded() -> None:
    status = collect([monthly()], {"uid-a": [row("1")]}, [pod("a", "studio")]).updates[0]
    current = status.status.patch()
    for month in range(1, 15):  # fourteen month ends: only the last twelve are kept
        start = dt.datetime(
            2027 + (month - 1) // 12, (month - 1) % 12 + 1, 1, 0, 0, 5, tzinfo=dt.UTC
        )
        (update,) = collect([monthly(current)], {}, [], start).updates
        current = {**current, **(update.patch or {})}
    past = current["pastPeriods"]
    assert len(past) == 12
    starts = [p["periodStart"] for p in past]
    assert starts == sorted(starts, reverse=True)
    # The last collection is in February 2028: January 2028 ended last, February 2027 is the
    # oldest of the twelve kept (December 2026 and January 2027 fell off).
    assert (starts[0], starts[-1]) == ("2028-01-01T00:00:00+00:00", "2027-02-01T00:00:00+00:00")


def test_rows_of_other_budgets_and_unselected_workloads_do_not_count() -> None:
    other = pod("x", "batch")
    other["metadata"]["labels"]["app"] = "batch"
    plan = collect(
        [monthly()],
        {"uid-a": [row("1", budget="team-a/else")], "uid-x": [row("7")]},
        [pod("a", "studio"), other],
    )
    assert plan.updates[0].status.spent_usd == "0.000000"


def test_invalid_budgets_are_skipped() -> None:
    broken = budget("broken", {"period": "hourly"})
    unnamed = budget("Not.A.Name", {"limits": {"costUSD": 1}})  # valid spec, refused by sidecars
    assert [b.identity for b in valid_budgets([broken, unnamed, monthly()])] == [
        "team-a/Not.A.Name",
        IDENTITY,
    ]
    plan = collect([broken, unnamed, monthly()], {"uid-a": [row("1")]}, [pod("a", "studio")])
    assert [u.budget.identity for u in plan.updates] == [IDENTITY]


def test_a_final_report_is_folded_into_the_current_period_only() -> None:
    first = collect([monthly()], {"uid-a": [row("2", 2)]}, [pod("a", "studio")])
    status = first.updates[0].status.patch()
    document = FinalUsage(pod_uid="uid-a", budgets=[row("2.5", 3), row("1", budget="x/y")])
    (update,) = plan_final_report(valid_budgets([monthly(status)]), document, NOW)
    assert update.status.spent_usd == "2.500000"
    assert Decimal(update.status.ledger["retired"]["spentUSD"]) == Decimal("2.5")  # type: ignore[index]
    stale = FinalUsage(pod_uid="uid-a", budgets=[row("2.5", 3, "2026-11-01T00:00:00+00:00")])
    assert plan_final_report(valid_budgets([monthly(status)]), stale, NOW) == []
    assert plan_final_report(valid_budgets([monthly(status)]), FinalUsage(), NOW) == []


def test_an_invalid_budget_gets_false_conditions_and_one_warning_event() -> None:
    broken = budget("broken", {"period": "hourly"})
    first = budget_feedback(broken, "T1")
    assert first.patch is not None
    valid, ready = first.patch["conditions"]
    assert (valid["type"], valid["status"], valid["reason"]) == ("Valid", "False", "Invalid")
    assert "period" in valid["message"]
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "NotEnforced",
        valid["message"],
    )
    assert valid["lastTransitionTime"] == "T1" and valid["observedGeneration"] == 1
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "InvalidBudget")]
    # Reported once: the same problems again write nothing and post no Event.
    again = budget_feedback(budget("broken", {"period": "hourly"}, status=first.patch), "T2")
    assert again.patch is None and again.events == []


def test_a_budget_the_sidecars_refuse_is_invalid_and_a_fixed_one_valid() -> None:
    unnamed = budget("Not.A.Name", {"limits": {"costUSD": 1}})
    refused = budget_feedback(unnamed, "T1")
    assert refused.patch is not None
    assert refused.patch["conditions"][0]["status"] == "False"
    fixed = budget_feedback(monthly(refused.patch), "T2")
    assert fixed.patch is not None and fixed.events == []
    valid, ready = fixed.patch["conditions"]
    assert (valid["status"], valid["reason"], valid["lastTransitionTime"]) == (
        "True",
        "Validated",
        "T2",
    )
    assert (ready["status"], ready["reason"]) == ("True", "Enforced")
    # The written conditions are what the CRD's metav1.Condition schema accepts.
    for condition in fixed.patch["conditions"]:
        Condition.model_validate(condition)
