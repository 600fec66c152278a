"""Budget admission: reserve the call's estimated cost in every applicable budget, settle later.

Runs inside the cache stage (a cache hit spends nothing, so it is served even when a budget is
exhausted) and outside fallback. Budgets that apply: the configuration's rules whose scope
matches the model and one of the call's candidate providers. A hard budget that the
reservation would overspend refuses the call (``errors.BudgetExceeded``, 429). The reservation
is settled when the reply is closed, after the metering stage priced it: with the actual cost,
or the estimate when the provider reported no usage (a stream cut before its final usage is
priced by the metering stage at its reported input and the output bound). A call cancelled
(caller gone, deadline passed) after it was sent upstream settles at the full reservation: the
provider may bill it and its usage will never be known. A call that failed otherwise, or never
left the sidecar, settles at zero; spend for a provider outside a budget's provider scope
settles at zero. The answer carries
``x-sluice-budget-remaining``: the smallest cost remaining after this call's reservation.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from sluice_sidecar.economics.budgets import BudgetLedger, BudgetRule, Reservation
from sluice_sidecar.economics.usage import output_bound
from sluice_sidecar.errors import NoProviderForModel
from sluice_sidecar.pipeline.call import Call, Next
from sluice_sidecar.transports.base import UpstreamReply

ZERO = Decimal(0)


class BudgetStage:
    def __init__(self, ledger: BudgetLedger) -> None:
        self._ledger = ledger

    async def __call__(self, call: Call, next_stage: Next) -> UpstreamReply:
        rules = _applicable(call)
        if not rules:
            return await next_stage(call)
        estimate = call.estimate
        cost = estimate.cost if estimate and estimate.cost is not None else ZERO
        tokens = estimate.tokens if estimate else 0
        operation = call.operation
        output = output_bound(
            call.body, call.kind, operation.max_tokens, force_preset=operation.force_preset
        )
        held = await self._ledger.admit(rules, cost, tokens, call.session, output)
        remaining = [r.remaining for r in held if r.remaining is not None]
        if remaining:
            call.response_headers["x-sluice-budget-remaining"] = str(max(min(remaining), ZERO))
        try:
            reply = await next_stage(call)
        except asyncio.CancelledError:
            if call.attempts:  # sent upstream, answer never seen: the provider may bill it
                self._charge(call, held, cost, tokens)
            else:
                self._ledger.settle(held, ZERO, 0)
            raise
        except BaseException:
            self._ledger.settle(held, ZERO, 0)
            raise
        reply.on_close.append(lambda: self._settle(call, held))
        return reply

    def _settle(self, call: Call, held: list[Reservation]) -> None:
        if call.usage is None:  # unknown: charge what was reserved
            estimate = call.estimate
            cost = estimate.cost if estimate and estimate.cost is not None else ZERO
            tokens = estimate.tokens if estimate else 0
        else:
            cost = call.cost if call.cost is not None else ZERO
            tokens = call.usage.total_tokens
        self._charge(call, held, cost, tokens)

    def _charge(self, call: Call, held: list[Reservation], cost: Decimal, tokens: int) -> None:
        provider = call.provider.name if call.provider else None
        in_scope = [r for r in held if r.rule.provider in (None, provider)]
        out_of_scope = [r for r in held if r.rule.provider not in (None, provider)]
        self._ledger.settle(in_scope, cost, tokens)
        self._ledger.settle(out_of_scope, ZERO, 0)


def _applicable(call: Call) -> tuple[BudgetRule, ...]:
    rules = call.runtime.budget_rules
    if not rules or call.model is None:
        return ()
    try:
        candidates = call.runtime.candidates(call.api, call.model, call.operation)
    except NoProviderForModel:
        return ()  # the fallback stage answers it
    names = [p.name for p in candidates]
    return tuple(rule for rule in rules if rule.applies(names, call.model))
