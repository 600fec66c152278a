"""Budget admission: reserve the call's estimated cost in every applicable budget, settle later.

Runs inside the cache stage (a cache hit spends nothing, so it is served even when a budget is
exhausted) and outside fallback. Budgets that apply: the configuration's rules whose scope
matches the model and one of the call's candidate providers. A hard budget that the
reservation would overspend refuses the call (``errors.BudgetExceeded``, 429). The reservation
is settled when the reply is closed, after the metering stage priced it: with the actual cost,
or the estimate when the provider reported no usage (a stream cut before its final usage is
priced by the metering stage at its reported input and the output bound). A call cancelled
(caller gone, deadline passed) after it was sent upstream settles at the full reservation: the
provider may bill it and its usage will never be known. Attempts sent and never answered
(``call.lost_attempts``: a dropped connection, an invalid answer) add their worst case at their
provider's price, whether a retry then succeeded or the call failed. A call that failed with
answers only (429, 5xx), or never left the sidecar, settles at zero; spend for a provider
outside a budget's provider scope settles at zero. The answer carries
``x-sluice-budget-remaining``: the smallest cost remaining after this call's reservation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from decimal import Decimal

from sluice_sidecar.contract.budget_maths import BudgetRule
from sluice_sidecar.economics.budgets import BudgetLedger, Reservation
from sluice_sidecar.economics.unanswered import lost_spend
from sluice_sidecar.economics.usage import output_bound
from sluice_sidecar.errors import NoProviderForModel
from sluice_sidecar.pipeline.call import Call, Next
from sluice_sidecar.transports.base import UpstreamReply

ZERO = Decimal(0)


class BudgetStage:
    def __init__(self, ledger: BudgetLedger) -> None:
        self._ledger = ledger

    def __call__(self, call: Call, next_stage: Next) -> Awaitable[UpstreamReply]:
        rules = _applicable(call)
        if not rules:
            return next_stage(call)  # no budget applies: no coroutine of this stage's
        return self._admitted(call, next_stage, rules)

    async def _admitted(
        self, call: Call, next_stage: Next, rules: tuple[BudgetRule, ...]
    ) -> UpstreamReply:
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
            self._charge(call, held, ZERO, 0)  # only what lost attempts may cost
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
        """Settle ``held`` at the answering provider's ``cost`` and ``tokens`` plus what each
        lost attempt may cost, each counted in the budgets whose scope holds its provider."""
        provider = call.provider.name if call.provider else None
        lost = _lost_by_provider(call)
        for reservation in held:
            scope = reservation.rule.provider
            extra_cost, extra_tokens = ZERO, 0
            for name, (lost_cost, lost_tokens) in lost.items():
                if scope in (None, name):
                    extra_cost += lost_cost
                    extra_tokens += lost_tokens
            if scope in (None, provider):
                self._ledger.settle([reservation], cost + extra_cost, tokens + extra_tokens)
            else:
                self._ledger.settle([reservation], extra_cost, extra_tokens)


def _lost_by_provider(call: Call) -> dict[str, tuple[Decimal, int]]:
    """What the call's lost attempts may cost, per provider: (USD, tokens)."""
    if not call.lost_attempts or call.estimate is None:
        return {}
    found: dict[str, tuple[Decimal, int]] = {}
    for attempt in call.lost_attempts:
        spend = lost_spend(
            call.runtime.prices,
            [attempt],
            call.estimate.prompt_tokens,
            call.estimate.max_output_tokens,
        )
        cost, tokens = found.get(attempt.provider, (ZERO, 0))
        found[attempt.provider] = (cost + spend.cost, tokens + spend.tokens)
    return found


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
