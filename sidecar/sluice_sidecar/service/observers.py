"""What the long-lived stores report: budget refusals and thresholds, breaker state changes.

The budget ledger, the Redis budget store and the breaker registry call these back (wired in
``sluice_sidecar.service.state``); each turns an event into metrics and, when a budget climbs
past a threshold, one warning line.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from sluice_sidecar.contract.budget_maths import (
    BUDGET_LEVELS,
    BudgetLevel,
    BudgetRule,
    Counters,
    level,
    utilization,
)
from sluice_sidecar.contract.periods import Period
from sluice_sidecar.economics.budgets import Refusal
from sluice_sidecar.observability.prometheus import Metrics
from sluice_sidecar.resilience.breaker import CircuitBreaker, State

logger = logging.getLogger("sluice.config")  # the name these warnings have always had


class BudgetObserver:
    """Budget metrics, and a warning each time a budget's level rises within a period."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._levels: dict[str, tuple[str, BudgetLevel]] = {}  # budget -> (period key, level)

    def keep(self, budgets: Collection[str]) -> None:
        """Forget the levels of every budget not in ``budgets`` (the configuration's)."""
        for gone in set(self._levels) - set(budgets):
            del self._levels[gone]

    def refused(self, rule: BudgetRule, refused: Refusal) -> None:
        self._metrics.budget_refusals.labels(
            rule.identity, refused.reason, rule.spec.enforcement
        ).inc()

    def settled(self, rule: BudgetRule, period: Period, counters: Counters) -> None:
        share = utilization(rule, counters)
        thresholds = rule.spec.thresholds
        self._metrics.budget(
            rule.identity,
            spent_usd=float(counters.spent + counters.external_cost),
            limit_usd=None if rule.cost_limit is None else float(rule.cost_limit),
            tokens=counters.tokens + counters.external_tokens,
            token_limit=rule.token_limit,
            thresholds={"warning": thresholds.warning, "alert": thresholds.alert},
        )
        now = level(rule, share)
        key, before = self._levels.get(rule.identity, (period.key, "OK"))
        if key != period.key:
            before = "OK"  # a new period starts from zero
        if now != before:
            self._levels[rule.identity] = (period.key, now)
            if BUDGET_LEVELS.index(now) > BUDGET_LEVELS.index(before):
                self._metrics.budget_thresholds.labels(rule.identity, now).inc()
                logger.warning(
                    "budget %s at %.0f%% of its limit (%s, %s enforcement)",
                    rule.identity,
                    share * 100,
                    now,
                    rule.spec.enforcement,
                )


class BreakerObserver:
    """Breaker state, trips and state changes as metrics, per provider and model."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def changed(self, breaker: CircuitBreaker, old: State, new: State) -> None:
        labels = (breaker.key.provider, breaker.key.model)
        self._metrics.breaker_state.labels(*labels).set(int(new))
        self._metrics.breaker_changes.labels(*labels, old.name.lower(), new.name.lower()).inc()
        if new is State.OPEN:
            self._metrics.breaker_trips.labels(*labels).inc()
