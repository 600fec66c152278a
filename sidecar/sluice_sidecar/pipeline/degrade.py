"""Budget-aware degradation: past a budget's threshold, a cheaper model or a leaner preset.

The outermost stage, so the estimate, the cache key and the budget's reservation are those of
the degraded call. A budget with a ``degrade`` section that applies to the call (its scope:
the model and the candidate providers), whose level is at least ``degrade.at`` (Warning or
Alert, from its spend as ``GET /admin/budgets`` shows it), rewrites a call of a matching
operation (chat, completions, messages): the model becomes ``degrade.model``, the output is
capped at ``degrade.maxTokens`` (the smaller of it and what the call or its preset asked) and
the temperature becomes ``degrade.temperature``; the capped values are forced upstream like a
preset with ``force``. The first such budget wins. The answer says so in
``x-sluice-degraded`` (the budget and what changed) and
``llm_budget_degradations_total{budget, operation}`` counts it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Awaitable

import orjson

from sluice_sidecar.contract.budget_maths import BUDGET_LEVELS, BudgetRule
from sluice_sidecar.contract.economics import BudgetDegradeSpec
from sluice_sidecar.economics.budgets import BudgetLedger
from sluice_sidecar.errors import NoProviderForModel
from sluice_sidecar.observability.prometheus import Metrics
from sluice_sidecar.pipeline.call import Call, Next
from sluice_sidecar.transports.base import UpstreamReply

DEGRADED_KINDS = frozenset({"chat", "completions", "messages"})
FROM_LEVEL = {"warning": BUDGET_LEVELS.index("Warning"), "alert": BUDGET_LEVELS.index("Alert")}


class DegradeStage:
    def __init__(self, ledger: BudgetLedger, metrics: Metrics) -> None:
        self._ledger = ledger
        self._metrics = metrics

    def __call__(self, call: Call, next_stage: Next) -> Awaitable[UpstreamReply]:
        applies = call.kind in DEGRADED_KINDS and call.body is not None and call.model is not None
        if applies and (degrading := _degrading(call)):
            return self._checked(call, next_stage, degrading)
        return next_stage(call)  # nothing that could degrade it: no coroutine of this stage's

    async def _checked(
        self, call: Call, next_stage: Next, degrading: list[tuple[BudgetRule, BudgetDegradeSpec]]
    ) -> UpstreamReply:
        for rule, spec in degrading:
            level = await self._ledger.level_of(rule)
            if BUDGET_LEVELS.index(level) >= FROM_LEVEL[spec.at]:
                self._degrade(call, rule, spec)
                break
        return await next_stage(call)

    def _degrade(self, call: Call, rule: BudgetRule, spec: BudgetDegradeSpec) -> None:
        changes = _rewrite(call, spec)
        if not changes:
            return
        call.response_headers["x-sluice-degraded"] = "; ".join(
            [f"budget={rule.identity}", *changes]
        )
        self._metrics.budget_degradations.labels(rule.identity, call.operation.name).inc()


def _degrading(call: Call) -> list[tuple[BudgetRule, BudgetDegradeSpec]]:
    """Budgets with a degrade section that apply to the call and match its operation."""
    rules = [(r, r.spec.degrade) for r in call.runtime.budget_rules if r.spec.degrade is not None]
    if not rules:
        return []
    assert call.model is not None
    try:
        candidates = call.runtime.candidates(call.api, call.model, call.operation)
    except NoProviderForModel:
        return []  # the fallback stage answers it
    names = [p.name for p in candidates]
    operation = call.operation.name
    return [
        (rule, spec)
        for rule, spec in rules
        if rule.applies(names, call.model)
        and any(fnmatch.fnmatchcase(operation, glob) for glob in spec.operations)
    ]


def _rewrite(call: Call, spec: BudgetDegradeSpec) -> list[str]:
    """Apply ``spec`` to the call; what changed, as ``name=value`` items."""
    assert call.body is not None
    body = dict(call.body)
    changes = []
    if spec.model is not None and spec.model != call.model:
        changes.append(f"model={call.model}->{spec.model}")
        call.model = body["model"] = spec.model
    if spec.max_tokens is not None or spec.temperature is not None:
        operation = call.operation
        asked = body.get("max_completion_tokens", body.get("max_tokens"))
        wanted = asked if isinstance(asked, int) and asked > 0 else operation.max_tokens
        cap = spec.max_tokens
        max_tokens = wanted if cap is None else min(cap, wanted or cap)
        temperature = spec.temperature
        if temperature is None and "temperature" not in body:
            temperature = operation.temperature  # the preset's, as it would have applied
        call.operation = dataclasses.replace(
            operation,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=None if "top_p" in body else operation.top_p,
            force_preset=True,  # the caps replace what the call asked
        )
        if cap is not None:
            changes.append(f"maxTokens={max_tokens}")
        if spec.temperature is not None:
            changes.append(f"temperature={spec.temperature:g}")
    call.body = body
    call.raw_body = orjson.dumps(body)
    return changes
