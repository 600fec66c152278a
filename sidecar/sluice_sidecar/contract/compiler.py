"""Compile the LlmPolicy resources that select one workload into one SidecarConfig.

Used by the operator (per workload) and by the sidecar's standalone mode (per policy directory),
so a laptop runs exactly what the cluster runs.

Precedence when several policies match: higher ``spec.priority`` first, then namespace/name in
alphabetical order. Sections (``providers``, ``defaults``, ``retry``, ``circuitBreaker``) come
whole from the first policy in that order that sets them. Operations merge per operation name
and per field: the built-in table is the base, policies of lower precedence are applied first,
so the winning policy's fields override, and a field a policy leaves unset keeps the value below.
The economics sections (``cache``, ``batching``, ``queue``, ``latency``) come whole like the
others; ``pricing`` merges per model, the winning policy's price overriding. LlmBudgets are
selected by the caller (the operator by labels, standalone mode: every budget of the folder)
and compiled in as ``budgets``, ordered by namespace/name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sluice_sidecar.contract.builtins import builtin_operations
from sluice_sidecar.contract.economics import ModelPriceSpec, WorkloadRef
from sluice_sidecar.contract.model import LlmBudget, LlmPolicy, OperationSpec, SidecarConfig

SECTIONS = (
    "providers",
    "defaults",
    "retry",
    "circuit_breaker",
    "error_policy",
    "cache",
    "batching",
    "queue",
    "latency",
    "pricing_file",
)


class CompileError(ValueError):
    """The policies cannot make a working configuration (e.g. no provider anywhere)."""


def order_by_precedence(policies: Iterable[LlmPolicy]) -> list[LlmPolicy]:
    return sorted(policies, key=lambda policy: (-policy.spec.priority, policy.identity))


def compile_policies(
    policies: Iterable[LlmPolicy],
    budgets: Iterable[LlmBudget] = (),
    *,
    workload: WorkloadRef | None = None,
) -> SidecarConfig:
    ordered = order_by_precedence(policies)
    if not ordered:
        raise CompileError("no LlmPolicy to compile")
    sections: dict[str, Any] = {}
    for section in SECTIONS:
        for policy in ordered:
            value = getattr(policy.spec, section)
            if value is not None:
                sections[section] = value
                break
    if "providers" not in sections:
        raise CompileError("no policy defines spec.providers")

    operations = builtin_operations()
    for policy in reversed(ordered):
        for name, spec in policy.spec.operations.items():
            operations[name] = _merge_operation(operations.get(name), spec)

    pricing: dict[str, ModelPriceSpec] = {}
    for policy in reversed(ordered):
        pricing.update(policy.spec.pricing or {})
    if workload is not None:
        sections["workload"] = workload
    return SidecarConfig(
        operations=operations,
        pricing=pricing,
        budgets=sorted((b.compiled() for b in budgets), key=lambda b: b.identity),
        sources=[policy.identity for policy in ordered],
        **sections,
    )


def _merge_operation(base: OperationSpec | None, override: OperationSpec) -> OperationSpec:
    if base is None:
        return override
    merged = base.model_dump(exclude_unset=False)
    for field in override.model_fields_set:
        value = getattr(override, field)
        if field == "preset" and value is not None and base.preset is not None:
            value = base.preset.model_copy(update=value.model_dump(exclude_unset=True))
        merged[field] = value
    return OperationSpec.model_validate(merged)
