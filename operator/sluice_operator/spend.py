"""Folding sidecars' cumulative spend into an LlmBudget's status (pure functions).

Each sidecar reports, per budget, what *it* spent this period: a counter that only grows
(it survives restarts through the state file). The status keeps the last value seen per pod
UID and a ``retired`` sum for pods that are gone, so the total is
``retired + sum(last value per live pod)``: collecting twice counts nothing twice, a missed
collection is caught up by the next, and a deleted pod's spend stays in ``retired``.
Utilization and state are not computed here: ``budget_plan`` uses the sidecar's own functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sluice_sidecar.contract.usage import SpendRow

MAX_RETIRED_PODS = 256
ZERO = Decimal(0)


@dataclass
class Spend:
    cost: Decimal = ZERO
    tokens: int = 0

    def __add__(self, other: Spend) -> Spend:
        return Spend(self.cost + other.cost, self.tokens + other.tokens)

    def as_json(self) -> dict[str, Any]:
        return {"spentUSD": str(self.cost), "tokens": self.tokens}

    @classmethod
    def of(cls, row: SpendRow) -> Spend:
        """What a sidecar reported for one budget (``GET /admin/usage``, ``POST /usage``)."""
        return cls(row.spent_usd, row.tokens)

    @classmethod
    def from_json(cls, row: dict[str, Any] | None) -> Spend:
        """A value of the status ledger (written by ``as_json``)."""
        row = row or {}
        return cls(Decimal(str(row.get("spentUSD", "0"))), int(row.get("tokens", 0)))


@dataclass
class BudgetSpend:
    period_start: str
    pods: dict[str, Spend] = field(default_factory=dict)
    retired: Spend = field(default_factory=Spend)
    retired_pods: dict[str, Spend] = field(default_factory=dict)  # last value of gone pods

    @property
    def total(self) -> Spend:
        total = self.retired
        for spend in self.pods.values():
            total = total + spend
        return total

    @classmethod
    def from_status(cls, status: dict[str, Any], period_start: str) -> BudgetSpend:
        if status.get("periodStart") != period_start:
            return cls(period_start)  # a new period starts from zero
        ledger = status.get("ledger") or {}
        return cls(
            period_start,
            pods={uid: Spend.from_json(row) for uid, row in (ledger.get("pods") or {}).items()},
            retired=Spend.from_json(ledger.get("retired")),
            retired_pods={
                uid: Spend.from_json(row) for uid, row in (ledger.get("retiredPods") or {}).items()
            },
        )

    def as_status(self) -> dict[str, Any]:
        return {
            "pods": {uid: s.as_json() for uid, s in self.pods.items()},
            "retired": self.retired.as_json(),
            "retiredPods": {uid: s.as_json() for uid, s in self.retired_pods.items()},
        }

    def observe(self, uid: str, spend: Spend) -> None:
        """A live pod's cumulative counter."""
        if uid in self.retired_pods:
            return
        previous = self.pods.get(uid)
        if previous is not None and spend.cost < previous.cost:
            self.retired = self.retired + previous  # its counter restarted from zero
        self.pods[uid] = spend

    def retire(self, uid: str, final: Spend | None = None) -> None:
        """A pod is gone; ``final`` is its last report when it sent one."""
        last = self.pods.pop(uid, None)
        if uid in self.retired_pods:
            last = self.retired_pods[uid]
            if final is not None and final.cost > last.cost:
                self.retired = self.retired + Spend(
                    final.cost - last.cost, final.tokens - last.tokens
                )
                self.retired_pods[uid] = final
            return
        value = final if final is not None and (last is None or final.cost >= last.cost) else last
        if value is None:
            return
        if last is not None and final is not None and final.cost < last.cost:
            value = last + final  # restarted, then reported
        self.retired = self.retired + value
        self.retired_pods[uid] = value
        while len(self.retired_pods) > MAX_RETIRED_PODS:
            self.retired_pods.pop(next(iter(self.retired_pods)))

    def others(self, uid: str) -> Spend:
        """What everyone but this pod spent: pushed to it as external spend."""
        own = self.pods.get(uid, Spend())
        total = self.total
        return Spend(total.cost - own.cost, total.tokens - own.tokens)
