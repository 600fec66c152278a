"""Attempts the provider may bill although it never answered them.

An attempt that reached the provider and came back without an HTTP answer (the connection
dropped after the request went out, the answer was not valid JSON or too large, a stream broke
before its first event, the attempt timed out) may have been worked on and billed in full. The
upstream stage notes each as a ``LostAttempt``; the metering stage records them apart from
answered spend (``unanswered`` in ``GET /admin/usage``) and the budget stage charges them, at
their worst case: the call's estimated prompt and output bound at that provider's price. An
error the provider answered (429, 5xx, 4xx) is not billed, nor is a connection never made.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sluice_sidecar.economics.pricing import PriceTable
from sluice_sidecar.errors import UpstreamError

NOT_WORKED_ON = frozenset({"redirect"})  # the provider pointed elsewhere and did no work


@dataclass(frozen=True, slots=True)
class LostAttempt:
    provider: str  # provider name
    model: str | None  # the model name sent upstream
    reason: str  # the error's short reason ("broken response", "invalid response", ...)


def may_be_billed(error: UpstreamError) -> bool:
    """Whether the provider may have worked on (and bill) an attempt that ended in ``error``."""
    if error.upstream_status is not None or error.reason in NOT_WORKED_ON:
        return False
    return error.sent


@dataclass(frozen=True, slots=True)
class LostSpend:
    """What lost attempts may cost, each attempt's and in all."""

    costs: tuple[Decimal | None, ...]  # per attempt; None: its model has no price
    tokens_each: int

    @property
    def cost(self) -> Decimal:
        return sum((c for c in self.costs if c is not None), Decimal(0))

    @property
    def tokens(self) -> int:
        return self.tokens_each * len(self.costs)


def lost_spend(
    prices: PriceTable, lost: list[LostAttempt], prompt_tokens: int, output_tokens: int
) -> LostSpend:
    """The worst case of each lost attempt at its provider's price (cached input or not)."""
    costs: list[Decimal | None] = []
    for attempt in lost:
        price = prices.lookup(attempt.provider, attempt.model) if attempt.model else None
        if price is None:
            costs.append(None)
            continue
        costs.append(
            max(
                price.cost(prompt_tokens, output_tokens),
                price.cost(prompt_tokens, output_tokens, prompt_tokens),
            )
        )
    return LostSpend(tuple(costs), prompt_tokens + output_tokens)
