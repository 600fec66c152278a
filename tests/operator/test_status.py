"""The status models (status.py): the CRD schema they generate keeps every published field, the
patches they build, the budget states, and condition transition times (conditions.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from sluice_operator import conditions, crds
from sluice_operator.status import BUDGET_STATES, BudgetStatus, PolicyStatus
from sluice_sidecar.contract import CompiledBudget
from sluice_sidecar.contract.budget_maths import Counters, build_rules, level, utilization

# What status fields the CRDs have published: renaming or removing one breaks readers
# (printer columns, dashboards, kubectl users); adding is fine.
PUBLISHED_POLICY = {
    "observedGeneration",
    "configHash",
    "providers",
    "workloads",
    "sidecars",
    "conditions",
}
PUBLISHED_BUDGET = {
    "observedGeneration",
    "spentUSD",
    "tokens",
    "limitUSD",
    "utilization",
    "state",
    "periodStart",
    "resetsAt",
    "ledger",
    "conditions",
}
PUBLISHED_CONDITION = {
    "type",
    "status",
    "reason",
    "message",
    "observedGeneration",
    "lastTransitionTime",
}


def status_properties(crd: dict[str, Any]) -> dict[str, Any]:
    version = crd["spec"]["versions"][0]
    return version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]


def test_generated_status_schemas_keep_every_published_field() -> None:
    policy = status_properties(crds.policy_crd())
    budget = status_properties(crds.budget_crd())
    assert set(policy) >= PUBLISHED_POLICY
    assert set(budget) >= PUBLISHED_BUDGET
    assert set(policy["sidecars"]["properties"]) >= {"desired", "synced", "summary"}
    for schema in (policy, budget):
        condition = schema["conditions"]["items"]
        assert set(condition["properties"]) >= PUBLISHED_CONDITION
        # metav1.Condition: every field but observedGeneration required, with its bounds.
        assert set(condition["required"]) == PUBLISHED_CONDITION - {"observedGeneration"}
        props = condition["properties"]
        assert props["reason"]["minLength"] == 1 and props["message"]["maxLength"] == 32768
        assert props["type"]["maxLength"] == 316 and props["observedGeneration"]["minimum"] == 0
        assert props["lastTransitionTime"]["format"] == "date-time"
        assert schema["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    assert budget["ledger"]["x-kubernetes-preserve-unknown-fields"] is True
    assert budget["state"]["enum"] == list(BUDGET_STATES)


def test_patches_carry_nulls_so_stale_values_are_removed() -> None:
    patch = BudgetStatus(spent_usd="1.000000", limit_usd=None).patch()
    assert patch["spentUSD"] == "1.000000"
    assert "limitUSD" in patch and patch["limitUSD"] is None
    assert PolicyStatus().patch()["conditions"] == []


@pytest.mark.parametrize(
    ("spent", "state"),
    [("0", "OK"), ("7.5", "Warning"), ("9", "Alert"), ("10", "Exceeded"), ("99", "Exceeded")],
)
def test_the_sidecars_levels_are_the_status_states(spent: str, state: str) -> None:
    (rule,) = build_rules([CompiledBudget.model_validate({"limits": {"costUSD": 10}})])
    share = utilization(rule, Counters(spent=Decimal(spent)))
    assert level(rule, share) == state
    assert state in BUDGET_STATES


def test_transition_time_moves_only_when_the_status_changes() -> None:
    first = conditions.merge_conditions(
        None, [conditions.condition("Ready", True, "Ready", "ok", 1)], "T1"
    )
    written = [c.patch() for c in first]
    same = conditions.merge_conditions(
        written, [conditions.condition("Ready", True, "Ready", "still ok", 2)], "T2"
    )
    assert same[0].last_transition_time == "T1"
    flipped = conditions.merge_conditions(
        written, [conditions.condition("Ready", False, "NotReady", "no", 2)], "T3"
    )
    assert flipped[0].last_transition_time == "T3"
    unknown = conditions.condition("Ready", None, "Pending", "?", None)
    assert unknown.status == "Unknown"
    assert conditions.same_conditions(
        written, [conditions.condition("Ready", True, "Ready", "ok", 1)]
    )
