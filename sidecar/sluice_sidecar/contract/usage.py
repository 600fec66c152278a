"""The usage protocol between the sidecars and the operator, as models both sides use.

- ``GET /admin/usage`` (the operator collects): a ``UsageReport`` whose ``budgets`` are
  ``BudgetUsage`` rows, what this sidecar spent per budget this period;
- ``PUT /admin/budgets/external`` (the operator pushes): an ``ExternalUsage``, what the *other*
  replicas spent, one ``SpendRow`` per budget;
- ``POST /usage`` on the operator (a stopping sidecar reports): a ``FinalUsage``.

Keys on the wire are camelCase (``periodStart``, ``spentUSD``, ``podUID``); amounts are exact
decimal strings. A reader ignores keys it does not know, so either side may add fields first.
A received amount that is negative, not finite or absurdly large is refused: it would corrupt
every later budget decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from sluice_sidecar.contract.budget_maths import BudgetLevel
from sluice_sidecar.contract.economics import BudgetLimits, BudgetPeriod, Enforcement

# A trillion dollars: more than any budget, small enough for exact Decimal sums and JSON.
MAX_USD = Decimal(10) ** 12
MAX_TOKENS = 2**53  # exact in every JSON reader
MAX_DIGITS = 40  # the operator's sums have at most 28 (Decimal's default precision)
MAX_ROWS = 10_000


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    def as_json(self) -> dict[str, Any]:
        """The wire form: camelCase keys, amounts as exact decimal strings."""
        # serialize_as_any: a BudgetUsage in a list of SpendRow keeps all its fields.
        return self.model_dump(mode="json", by_alias=True, serialize_as_any=True)


class SpendRow(_Wire):
    """What was spent on one budget in one period: the part of a row both sides read."""

    budget: str = Field(max_length=512, description="Budget identity, namespace/name.")
    period_start: str = Field(
        alias="periodStart", max_length=64, description="Start of the period, ISO 8601."
    )
    spent_usd: Decimal = Field(
        alias="spentUSD",
        ge=0,
        le=MAX_USD,
        allow_inf_nan=False,
        max_digits=MAX_DIGITS,
        description="USD.",
    )
    tokens: int = Field(default=0, ge=0, le=MAX_TOKENS)


class PastPeriod(_Wire):
    """A budget's total in one of its previous periods, as it was enforced."""

    period_start: str = Field(alias="periodStart", max_length=64, description="ISO 8601.")
    spent_usd: Decimal = Field(alias="spentUSD", description="USD, other replicas' included.")
    tokens: int = Field(default=0, ge=0, description="Other replicas' included.")


class BudgetUsage(SpendRow):
    """One budget as this sidecar counts it (``GET /admin/usage`` and ``/admin/budgets``)."""

    period: BudgetPeriod
    resets_at: str | None = Field(alias="resetsAt", description="None: never (period total).")
    enforcement: Enforcement
    limits: BudgetLimits
    reserved_usd: Decimal = Field(alias="reservedUSD", description="Held by calls in flight.")
    external_usd: Decimal = Field(alias="externalUSD", description="Other replicas' spend.")
    utilization: float = Field(ge=0)
    state: BudgetLevel
    past_periods: list[PastPeriod] = Field(
        default_factory=list,
        alias="pastPeriods",
        description="The previous periods that had spend, newest first (at most 12).",
    )

    @field_serializer("limits")
    def _limits(self, limits: BudgetLimits) -> dict[str, Any]:
        return limits.model_dump(mode="json", by_alias=True, exclude_none=True)


class UsageReport(_Wire):
    """``GET /admin/usage`` as the operator reads it (the sidecar sends more: totals, series)."""

    workload: str | None = None
    budgets: list[SpendRow] = Field(default_factory=list, max_length=MAX_ROWS)


class ExternalUsage(_Wire):
    """The body of ``PUT /admin/budgets/external``: the other replicas' spend per budget."""

    budgets: list[SpendRow] = Field(max_length=MAX_ROWS)


class FinalUsage(_Wire):
    """The body a stopping sidecar POSTs to the operator's ``/usage``."""

    pod_uid: str | None = Field(default=None, alias="podUID", max_length=128)
    namespace: str | None = Field(default=None, max_length=253, description="Required by /usage.")
    workload: str | None = Field(default=None, max_length=512)
    # A sidecar sends its BudgetUsage rows whole; the operator reads what a SpendRow holds.
    budgets: Sequence[SpendRow] = Field(default_factory=list, max_length=MAX_ROWS)
