"""What the operator reports on LlmPolicy and LlmBudget: status models (one source) and Events.

``crds.py`` generates the CRDs' status schemas from these models, and the reconciler and the
budget aggregator build their status patches with them (``patch()``), so what is written and
what the API server accepts cannot drift apart. Every field may be absent or null (the API
server keeps whatever an older operator wrote); the operator always writes all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sluice_sidecar.contract.budget_maths import BUDGET_LEVELS, BudgetLevel

ConditionStatus = Literal["True", "False", "Unknown"]
# The budget's level as the sidecar computes it (contract.budget_maths.level): the only states.
BudgetState = BudgetLevel
BUDGET_STATES: tuple[str, ...] = BUDGET_LEVELS


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the object ``body`` (the other half of reporting)."""

    body: dict[str, Any]
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


class StatusModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    def patch(self) -> dict[str, Any]:
        """The JSON merge patch body (nulls included: they remove what is no longer true)."""
        return self.model_dump(mode="json", by_alias=True)


# metav1.Condition's validation, so a condition the operator writes is one kubectl, kstatus
# and every controller library read: the same required fields, patterns and bounds.
CONDITION_TYPE = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class ConditionDraft(StatusModel):
    """A condition as a planner decides it, before ``conditions.merge_conditions`` dates it."""

    type: str = Field(max_length=316, pattern=CONDITION_TYPE)
    status: ConditionStatus
    reason: str = Field(min_length=1, max_length=1024, pattern=CONDITION_REASON)
    message: str = Field(max_length=32768)
    observed_generation: int | None = Field(default=None, alias="observedGeneration", ge=0)


class Condition(ConditionDraft):
    """One condition in the shape of metav1.Condition, with its required fields and bounds."""

    last_transition_time: str = Field(
        alias="lastTransitionTime", json_schema_extra={"format": "date-time"}
    )


CONDITIONS: Any = Field(  # the conditions field of both statuses
    default_factory=list,
    max_length=16,
    json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
)


class SidecarCount(StatusModel):
    desired: int | None = None
    synced: int | None = None
    summary: str | None = Field(default=None, description="synced/desired, for printing.")


class PolicyStatus(StatusModel):
    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    config_hash: str | None = Field(default=None, alias="configHash")
    providers: int | None = Field(default=None, description="Providers in the policy.")
    workloads: list[str] = Field(
        default_factory=list,
        max_length=1024,
        description="Workloads (namespace/name) this policy applies to.",
    )
    sidecars: SidecarCount | None = None
    conditions: list[Condition] = CONDITIONS


PAST_PERIODS_KEPT = 12  # as the sidecar keeps them


class PastPeriod(StatusModel):
    """The totals a period ended with, as the operator last folded them."""

    period_start: str = Field(alias="periodStart", json_schema_extra={"format": "date-time"})
    spent_usd: str = Field(alias="spentUSD", description="Spend of the period (decimal string).")
    tokens: int = Field(ge=0, description="Input+output tokens of the period.")


class BudgetStatus(StatusModel):
    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    spent_usd: str | None = Field(
        default=None, alias="spentUSD", description="Spend this period (decimal string)."
    )
    tokens: int | None = Field(default=None, description="Input+output tokens this period.")
    limit_usd: str | None = Field(
        default=None, alias="limitUSD", description="spec.limits.costUSD, for printing."
    )
    utilization: str | None = Field(
        default=None, description="Share of the tightest limit, e.g. 42%."
    )
    state: BudgetState | None = None
    period_start: str | None = Field(
        default=None, alias="periodStart", json_schema_extra={"format": "date-time"}
    )
    resets_at: str | None = Field(
        default=None, alias="resetsAt", json_schema_extra={"format": "date-time"}
    )
    ledger: dict[str, Any] | None = Field(
        default=None,
        description="Last cumulative spend seen per pod UID, and the spend of pods that "
        "are gone: spentUSD = retired + the sum over pods.",
    )
    past_periods: list[PastPeriod] = Field(
        default_factory=list,
        alias="pastPeriods",
        max_length=PAST_PERIODS_KEPT,
        description="The last periods' totals, newest first (at most 12).",
    )
    conditions: list[Condition] = CONDITIONS
