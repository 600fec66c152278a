"""A budget as both sides compute it: the compiled rule, its counters, utilization and level.

The sidecar enforces these (``economics.budgets``); the operator reports them in
``LlmBudget.status`` with the same functions, so the status says exactly what is enforced.
"""

from __future__ import annotations

import fnmatch
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, get_args

from sluice_sidecar.contract.economics import CompiledBudget

BudgetLevel = Literal["OK", "Warning", "Alert", "Exceeded"]
BUDGET_LEVELS: tuple[BudgetLevel, ...] = get_args(BudgetLevel)  # lowest first
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class BudgetRule:
    spec: CompiledBudget
    identity: str
    provider: str | None
    model_pattern: re.Pattern[str] | None
    cost_limit: Decimal | None
    token_limit: int | None
    per_request: Decimal | None
    per_session: Decimal | None
    per_request_tokens: int | None
    per_session_tokens: int | None
    hard: bool

    def applies(self, providers: Iterable[str], model: str) -> bool:
        if self.model_pattern is not None and not self.model_pattern.match(model):
            return False
        return self.provider is None or self.provider in providers


def build_rules(budgets: Sequence[CompiledBudget]) -> tuple[BudgetRule, ...]:
    rules = []
    for spec in budgets:
        model = spec.scope.model
        rules.append(
            BudgetRule(
                spec=spec,
                identity=spec.identity,
                provider=spec.scope.provider,
                model_pattern=re.compile(fnmatch.translate(model)) if model else None,
                cost_limit=spec.limits.cost_usd,
                token_limit=spec.limits.tokens,
                per_request=spec.limits.per_request_cost_usd,
                per_session=spec.limits.per_session_cost_usd,
                per_request_tokens=spec.limits.per_request_tokens,
                per_session_tokens=spec.limits.per_session_tokens,
                hard=spec.enforcement == "hard",
            )
        )
    return tuple(rules)


@dataclass(slots=True)
class Counters:
    spent: Decimal = ZERO
    tokens: int = 0
    reserved_cost: Decimal = ZERO
    reserved_tokens: int = 0
    external_cost: Decimal = ZERO  # spent elsewhere (other replicas), as last reported
    external_tokens: int = 0
    # Per session: [spent, reserved, tokens, reserved tokens] (tokens held as Decimal too).
    sessions: OrderedDict[str, list[Decimal]] = field(default_factory=OrderedDict)

    @property
    def used_cost(self) -> Decimal:
        return self.spent + self.external_cost + self.reserved_cost

    @property
    def used_tokens(self) -> int:
        return self.tokens + self.external_tokens + self.reserved_tokens


def utilization(rule: BudgetRule, c: Counters) -> float:
    shares = []
    if rule.cost_limit:
        shares.append(float((c.spent + c.external_cost) / rule.cost_limit))
    if rule.token_limit:
        shares.append((c.tokens + c.external_tokens) / rule.token_limit)
    return max(shares, default=0.0)


def level(rule: BudgetRule, share: float) -> BudgetLevel:
    thresholds = rule.spec.thresholds
    if share >= 1:
        return "Exceeded"
    if share >= thresholds.alert:
        return "Alert"
    if share >= thresholds.warning:
        return "Warning"
    return "OK"
