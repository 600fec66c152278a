"""Cumulative usage of this process, served by ``GET /admin/usage``.

One ``UsageLedger`` per process (``SidecarState``), surviving configuration swaps. Counters only
grow, per (provider, model, operation), and carry the process's ``boot_id`` so a collector
(the operator, per pod UID) can tell a restart from a reset. Bounded: ``MAX_KEYS`` series, then
new ones are folded into ``other``. Money is ``Decimal``.

Answered calls and what was never answered are kept apart: ``unanswered`` counts calls that
failed after reaching a provider, calls cancelled after they were sent (charged their
reservation), and attempts the provider may bill although it never answered them (each at its
worst case, in the series of the provider it was sent to; see ``unanswered``).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sluice_sidecar.economics.usage import Usage

MAX_KEYS = 4096
OTHER = ("other", "other", "other")


@dataclass(slots=True)  # not frozen: one per call, and a frozen __init__ costs 5x (13 µs)
class CallRecord:
    """One finished call as the economics stages saw it; its recorders only read it."""

    at: float  # wall-clock time the call started (epoch seconds)
    session: str | None
    operation: str
    provider: str
    model: str
    usage: Usage | None  # None: the provider reported none
    cost: Decimal | None  # None: unknown usage or unpriced model
    estimated_cost: Decimal | None
    cache: str  # hit, miss, bypass, off
    saved: Decimal | None  # cache hits: what the call would have cost
    latency_ms: float
    retries: int
    status: int
    fingerprint: str | None = None  # hash of the request, for calls of a session
    kind: str = "chat"  # route kind: chat, completions, embeddings, messages
    # Why the usage is the call's estimate, not the provider's report: "cancelled" (the caller
    # left or the deadline passed after the call was sent), "cut" (a stream ended before its
    # final usage); None: reported by the provider (or unknown, usage None).
    estimated: str | None = None
    answered: bool = True  # False: failed or cancelled after it was sent (status says which)
    # Attempts sent and never answered: (provider, possible cost; None: unpriced) each.
    lost: tuple[tuple[str, Decimal | None], ...] = ()
    output_bound: int | None = None  # the output tokens the call was bounded (reserved) at
    temperature: float | None = None  # as sent: the request's, else the operation preset's


@dataclass(slots=True)
class Unanswered:
    """What providers may bill for calls and attempts they never answered."""

    calls: int = 0  # failed after reaching a provider
    cancelled: int = 0  # cancelled after they were sent: charged their reservation
    attempts: int = 0  # sent and never answered, whether a retry then succeeded or not
    possible_cost: Decimal = field(default_factory=Decimal)

    def add_attempt(self, cost: Decimal | None) -> None:
        self.attempts += 1
        self.possible_cost += cost or 0

    def as_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "cancelledCalls": self.cancelled,
            "attempts": self.attempts,
            "possibleCostUSD": str(self.possible_cost),
        }


@dataclass(slots=True)
class Totals:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost: Decimal = field(default_factory=Decimal)
    unknown_usage: int = 0
    estimated_usage: int = 0  # calls charged on their estimate (their tokens and cost included)
    unpriced: int = 0
    cache_hits: int = 0
    saved: Decimal = field(default_factory=Decimal)
    unanswered: Unanswered = field(default_factory=Unanswered)

    def add(self, record: CallRecord, *, lost: bool = True) -> None:
        """Count ``record``; ``lost``: its lost attempts too (else the caller places them)."""
        if lost:
            for _, cost in record.lost:
                self.unanswered.add_attempt(cost)
        if not record.answered:
            if record.estimated == "cancelled":
                self.unanswered.cancelled += 1
                self.unanswered.possible_cost += record.cost or 0
            else:
                self.unanswered.calls += 1
            return
        self.requests += 1
        if record.cache == "hit":
            self.cache_hits += 1
            self.saved += record.saved or 0
            return
        if record.usage is None:
            self.unknown_usage += 1
            return
        if record.estimated is not None:
            self.estimated_usage += 1
        self.input_tokens += record.usage.input_tokens
        self.output_tokens += record.usage.output_tokens
        self.cached_input_tokens += record.usage.cached_input_tokens
        if record.cost is None:
            self.unpriced += 1
        else:
            self.cost += record.cost

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "cachedInputTokens": self.cached_input_tokens,
            "costUSD": str(self.cost),
            "unknownUsageCalls": self.unknown_usage,
            "estimatedUsageCalls": self.estimated_usage,
            "unpricedCalls": self.unpriced,
            "cacheHits": self.cache_hits,
            "savedUSD": str(self.saved),
            "unanswered": self.unanswered.as_json(),
        }


class UsageLedger:
    def __init__(self) -> None:
        self.boot_id = uuid.uuid4().hex
        self.started_at = time.time()
        self._series: dict[tuple[str, str, str], Totals] = {}
        self.total = Totals()

    def record(self, record: CallRecord) -> None:
        self._series_of(record.provider, record).add(record, lost=False)
        for provider, cost in record.lost:  # in the series of the provider that lost it
            self._series_of(provider, record).unanswered.add_attempt(cost)
        self.total.add(record)

    def _series_of(self, provider: str, record: CallRecord) -> Totals:
        key = (provider, record.model, record.operation)
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= MAX_KEYS - 1:
                key = OTHER
            series = self._series.setdefault(key, Totals())
        return series

    def snapshot(self) -> dict[str, Any]:
        rows = [
            {"provider": p, "model": m, "operation": o, **t.as_json()}
            for (p, m, o), t in sorted(self._series.items())
        ]
        return {
            "bootId": self.boot_id,
            "startedAt": self.started_at,
            "totals": self.total.as_json(),
            "series": rows,
        }
