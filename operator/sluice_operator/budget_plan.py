"""Budget aggregation, the pure part: usage rows in, budget statuses, Events and pushes out.

``plan_collection`` folds what each ready sidecar reported (``GET /admin/usage``) into every
budget that selects its workload (``spend.BudgetSpend``), and says what to push back to each
sidecar: the spend of the *other* replicas (``PUT /admin/budgets/external``).
``plan_final_report`` folds a stopping sidecar's last report. ``budget_feedback`` says whether
a budget is valid (its conditions, and an ``InvalidBudget`` Event when it turns invalid).
``budget_update`` turns a budget's folded spend into its status (``status.BudgetStatus``) and
the Events a state change posts. Utilization and level are the sidecar's own functions on the
sidecar's own rule, so the status says exactly what the sidecars enforce.
``aggregator.BudgetAggregator`` reads and applies.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from sluice_operator import conditions
from sluice_operator.kube import Body
from sluice_operator.reading import Workloads
from sluice_operator.resources import Budget
from sluice_operator.selection import policies_for
from sluice_operator.spend import BudgetSpend, Spend
from sluice_operator.status import PAST_PERIODS_KEPT, BudgetStatus, Event, PastPeriod
from sluice_operator.workloads import alive
from sluice_sidecar.contract import LlmBudget, config_problems
from sluice_sidecar.contract.budget_maths import (
    BudgetRule,
    Counters,
    build_rules,
    level,
    utilization,
)
from sluice_sidecar.contract.periods import Period, period_of
from sluice_sidecar.contract.usage import FinalUsage, SpendRow

MICRO = Decimal("0.000001")
UsageRows = dict[str, dict[str, SpendRow]]  # pod UID -> budget identity -> the sidecar's row


@dataclass(frozen=True)
class BudgetUpdate:
    budget: Budget
    status: BudgetStatus
    patch: Body | None  # the merge patch of status; None when it is unchanged
    events: list[Event]


@dataclass
class ExternalPush:
    """What one sidecar is told the other replicas spent, per budget."""

    pod: Body
    rows: list[SpendRow] = field(default_factory=list)


@dataclass(frozen=True)
class CollectionPlan:
    updates: list[BudgetUpdate]
    pushes: list[ExternalPush]


def _period(budget: Budget, now: dt.datetime) -> Period:
    return period_of(budget.model.spec.period, now)


def fold_observed(
    budget: Budget, pods: list[Body], usage: UsageRows, period: Period
) -> BudgetSpend:
    """The budget's ledger after this collection: live pods observed, vanished pods retired."""
    spend = BudgetSpend.from_status(budget.status, period.start.isoformat())
    live = {p["metadata"]["uid"] for p in pods if alive(p)}
    for uid, rows in usage.items():
        row = rows.get(budget.identity)
        if uid in live and row is not None and row.period_start == spend.period_start:
            spend.observe(uid, Spend.of(row))
    for uid in list(spend.pods):
        if uid not in live:
            spend.retire(uid)  # gone without a final report: keep what was last seen
    return spend


def budget_update(
    budget: Budget, rule: BudgetRule, spend: BudgetSpend, period: Period
) -> BudgetUpdate:
    total = spend.total
    share = utilization(rule, Counters(spent=total.cost, tokens=total.tokens))
    state = level(rule, share)
    limit = budget.model.spec.limits.cost_usd
    status = BudgetStatus(
        observed_generation=budget.model.metadata.generation,
        spent_usd=str(total.cost.quantize(MICRO)),
        tokens=total.tokens,
        limit_usd=str(limit) if limit is not None else None,
        utilization=f"{share:.0%}",
        state=state,
        period_start=spend.period_start,
        resets_at=period.resets_at.isoformat() if period.resets_at else None,
        ledger=spend.as_status(),
        past_periods=_past_periods(budget.status, spend.period_start),
    )
    old = budget.status
    events = []
    if old.get("periodStart") not in (None, spend.period_start):
        events.append(
            Event(
                budget.body,
                "Normal",
                "PeriodReset",
                f"new {budget.model.spec.period} period from {spend.period_start}",
            )
        )
    if old.get("state", "OK") != state:
        events.append(
            Event(
                budget.body,
                "Normal" if state == "OK" else "Warning",
                f"Budget{state}",
                f"{budget.identity} is at {share:.0%} of its limit "
                f"(spent ${status.spent_usd}, {total.tokens} tokens): {state}",
            )
        )
    wanted = {k: v for k, v in status.patch().items() if k != "conditions"}
    if {k: old.get(k) for k in wanted} == wanted:
        return BudgetUpdate(budget, status, None, events)
    patch = {**wanted, "ledger": _merge_patch(old.get("ledger") or {}, wanted["ledger"])}
    return BudgetUpdate(budget, status, patch, events)


def _past_periods(old: Body, period_start: str) -> list[PastPeriod]:
    """The kept periods' totals; when a new period starts, the one that ended goes first."""
    kept = []
    for entry in old.get("pastPeriods") or []:
        try:
            kept.append(PastPeriod.model_validate(entry))
        except ValidationError:
            continue  # an entry edited by hand into nonsense is dropped, not fatal
    ended = old.get("periodStart")
    if ended not in (None, period_start) and all(p.period_start != ended for p in kept):
        try:
            last = PastPeriod.model_validate(
                {"periodStart": ended, "spentUSD": old.get("spentUSD") or "0",
                 "tokens": old.get("tokens") or 0}
            )  # fmt: skip
            kept.insert(0, last)
        except ValidationError:
            pass
    return kept[:PAST_PERIODS_KEPT]


def plan_collection(
    budgets: list[Budget], workloads: Workloads, usage: UsageRows, now: dt.datetime
) -> CollectionPlan:
    updates = []
    pushes: dict[str, ExternalPush] = {}
    for budget in budgets:
        rule = budget.rule()
        if rule is None:
            continue
        pods = [
            pod
            for workload in workloads.every()
            if policies_for(workload.labels, [budget.model])
            for pod in workload.pods
        ]
        period = _period(budget, now)
        spend = fold_observed(budget, pods, usage, period)
        updates.append(budget_update(budget, rule, spend, period))
        for pod in pods:
            uid = pod["metadata"]["uid"]
            if uid in usage:
                others = spend.others(uid)
                pushes.setdefault(uid, ExternalPush(pod)).rows.append(
                    SpendRow(
                        budget=budget.identity,
                        period_start=spend.period_start,
                        spent_usd=others.cost,
                        tokens=others.tokens,
                    )
                )
    return CollectionPlan(updates, list(pushes.values()))


def plan_final_report(
    budgets: list[Budget], report: FinalUsage, now: dt.datetime
) -> list[BudgetUpdate]:
    """A stopping sidecar's last usage, folded into the budgets of its current period."""
    uid = report.pod_uid
    if not uid:
        return []
    rows = {row.budget: row for row in report.budgets}
    updates = []
    for budget in budgets:
        row = rows.get(budget.identity)
        rule = budget.rule()
        if row is None or rule is None:
            continue
        period = _period(budget, now)
        spend = BudgetSpend.from_status(budget.status, period.start.isoformat())
        if row.period_start == spend.period_start:
            spend.retire(uid, Spend.of(row))
            updates.append(budget_update(budget, rule, spend, period))
    return updates


@dataclass(frozen=True)
class BudgetFeedback:
    body: Body
    patch: Body | None  # the merge patch of status (conditions); None when unchanged
    events: list[Event]


def budget_problems(body: Body) -> list[str]:
    """Why a budget cannot be enforced: its spec, or the rule the sidecars would build."""
    try:
        model = LlmBudget.model_validate(body)
        build_rules([model.compiled()])
    except ValidationError as error:
        return config_problems(error)
    return []


def budget_feedback(body: Body, now: str) -> BudgetFeedback:
    """The ``Valid`` and ``Ready`` conditions of one budget, as LlmPolicy reports them.

    An invalid budget is never enforced (the sidecars keep the valid ones), and it turning
    invalid posts one ``Warning InvalidBudget`` Event."""
    problems = budget_problems(body)
    generation = body["metadata"].get("generation")
    valid = not problems
    message = "; ".join(problems) if problems else "the budget is valid"
    new = [
        conditions.condition(
            "Valid", valid, "Validated" if valid else "Invalid", message, generation
        ),
        conditions.condition(
            "Ready",
            valid,
            "Enforced" if valid else "NotEnforced",
            "enforced by the sidecars of the workloads it selects" if valid else message,
            generation,
        ),
    ]
    old = (body.get("status") or {}).get("conditions")
    was_valid = next((c.get("status") for c in old or [] if c.get("type") == "Valid"), None)
    events = []
    if not valid and was_valid != "False":
        events.append(Event(body, "Warning", "InvalidBudget", message))
    if conditions.same_conditions(old, new):
        return BudgetFeedback(body, None, events)
    merged = conditions.merge_conditions(old, new, now)
    # observedGeneration too: the collector never writes an invalid budget's status.
    patch: Body = {"observedGeneration": generation, "conditions": [c.patch() for c in merged]}
    return BudgetFeedback(body, patch, events)


def _merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` as a JSON merge patch over ``old``: keys that left the maps become null."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict) and key != "retired":
            patch[key] = {**{k: None for k in before if k not in value}, **value}
        else:
            patch[key] = value
    return patch
