"""Session (job) reports: calls grouped by the ``X-LLM-Session`` header, served by
``GET /admin/sessions/{id}`` with optimisation suggestions (``advice``).

One ``SessionBook`` per process (``SidecarState``), fed every metered call record that carries a
session. Bounded: ``MAX_SESSIONS`` sessions (least recently active dropped), the last
``MAX_CALLS`` calls listed per session (totals keep counting past it), ``MAX_FINGERPRINTS``
request fingerprints per session for spotting repeated requests, ``MAX_GROUPS`` operations,
providers and models per session (then ``other``), and ``MAX_ITEMS`` of all these items over
all sessions together: the per-session caps alone would let a thousand busy sessions hold
about a gigabyte (a listed call with its fingerprint is about 750 bytes), so past it the least
recently active sessions are dropped whole, as past ``MAX_SESSIONS``.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sluice_sidecar.economics.advice import suggestions
from sluice_sidecar.economics.ledger import CallRecord, Totals

MAX_SESSIONS = 1000
MAX_CALLS = 1000
MAX_FINGERPRINTS = 4096
MAX_GROUPS = 64  # named operations, providers and models per session, each (then "other")
MAX_ITEMS = 100_000  # calls listed + fingerprints + groups, all sessions: about 75 MB at most
OTHER = "other"


@dataclass(slots=True)
class Session:
    id: str
    first_at: float
    last_at: float = 0.0
    total: Totals = field(default_factory=Totals)
    by_operation: dict[str, Totals] = field(default_factory=dict)
    by_provider: dict[str, Totals] = field(default_factory=dict)
    by_model: dict[str, Totals] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    calls: deque[CallRecord] = field(default_factory=lambda: deque(maxlen=MAX_CALLS))
    seen: set[str] = field(default_factory=set)
    repeats: int = 0
    repeat_cost: Decimal = field(default_factory=Decimal)

    def add(self, record: CallRecord) -> None:
        self.last_at = max(self.last_at, record.at)
        self.total.add(record)
        for table, key in (
            (self.by_operation, record.operation),
            (self.by_provider, record.provider),
            (self.by_model, record.model),
        ):
            if key not in table and len(table) >= MAX_GROUPS:
                key = OTHER
            table.setdefault(key, Totals()).add(record)
        self.by_kind[record.kind] = self.by_kind.get(record.kind, 0) + 1
        self.calls.append(record)
        if record.fingerprint is not None and record.cache != "hit":
            if record.fingerprint in self.seen:
                self.repeats += 1
                self.repeat_cost += record.cost or 0
            elif len(self.seen) < MAX_FINGERPRINTS:
                self.seen.add(record.fingerprint)

    @property
    def items(self) -> int:
        """What this session holds that grows with its calls (see ``MAX_ITEMS``)."""
        groups = len(self.by_operation) + len(self.by_provider) + len(self.by_model)
        return len(self.calls) + len(self.seen) + groups


class SessionBook:
    def __init__(self, *, max_items: int = MAX_ITEMS) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._max_items = max_items
        self.items = 0  # Session.items summed over the sessions kept

    def record(self, record: CallRecord) -> None:
        if record.session is None:
            return
        session = self._sessions.get(record.session)
        if session is None:
            session = self._sessions[record.session] = Session(record.session, record.at)
        else:
            self._sessions.move_to_end(record.session)
        before = session.items
        session.add(record)
        self.items += session.items - before
        while len(self._sessions) > 1 and (
            len(self._sessions) > MAX_SESSIONS or self.items > self._max_items
        ):
            _, dropped = self._sessions.popitem(last=False)  # the least recently active
            self.items -= dropped.items

    def ids(self) -> list[dict[str, Any]]:
        return [
            {"session": s.id, "calls": s.total.requests, "lastCallAt": s.last_at}
            for s in reversed(self._sessions.values())
        ]

    def report(self, session_id: str) -> dict[str, Any] | None:
        session = self._sessions.get(session_id)
        if session is None:
            return None
        total = session.total
        looked = total.requests
        return {
            "session": session.id,
            "firstCallAt": session.first_at,
            "lastCallAt": session.last_at,
            "totals": total.as_json(),
            "cacheHitRate": round(total.cache_hits / looked, 4) if looked else 0.0,
            "byOperation": _table(session.by_operation),
            "byProvider": _table(session.by_provider),
            "byModel": _table(session.by_model),
            "calls": [_call(c) for c in session.calls],
            "callsListed": len(session.calls),
            "suggestions": suggestions(session),
        }


def _table(rows: dict[str, Totals]) -> dict[str, Any]:
    return {name: totals.as_json() for name, totals in sorted(rows.items())}


def _call(record: CallRecord) -> dict[str, Any]:
    usage = record.usage
    return {
        "at": record.at,
        "operation": record.operation,
        "provider": record.provider,
        "model": record.model,
        "inputTokens": usage.input_tokens if usage else None,
        "outputTokens": usage.output_tokens if usage else None,
        "latencyMs": record.latency_ms,
        "retries": record.retries,
        "costUSD": None if record.cost is None else str(record.cost),
        "savedUSD": None if record.saved is None else str(record.saved),
        "cache": record.cache,
    }
