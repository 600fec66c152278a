"""Budget enforcement core: rules per configuration, the ledger of spend, the memory store.

``contract.budget_maths.build_rules`` turns the configuration's ``budgets`` into ``BudgetRule``
objects once per configuration (``runtime.build_runtime``). ``BudgetLedger`` (one per process, in
``SidecarState``, surviving configuration swaps) admits a call by *reserving* its estimated cost
and tokens in every budget that applies, and settles the reservation with the actual cost when
the answer is complete, so concurrent calls cannot all pass one check and overspend together.
Refusal: ``errors.BudgetExceeded`` (429). Soft budgets never refuse; they count every call over
their limit and log it at most once a minute per budget.

Stores keep counters per (budget, period key): ``MemoryBudgetStore`` here (optionally saved to
a state file, see ``budget_store``), ``RedisBudgetStore`` in ``budget_redis`` (shared by
replicas, atomic Lua scripts). Spend reported from elsewhere (the operator's aggregate, later)
goes into ``external`` counters, which every check includes. Money is ``Decimal``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, Protocol

from sluice_sidecar.contract.budget_maths import (
    BudgetLevel,
    BudgetRule,
    Counters,
    level,
    utilization,
)
from sluice_sidecar.contract.periods import Period, period_of, previous_periods
from sluice_sidecar.contract.usage import BudgetUsage, PastPeriod
from sluice_sidecar.economics.usage import OutputBound
from sluice_sidecar.errors import BudgetExceeded
from sluice_sidecar.observability.throttled_log import ThrottledLog

logger = logging.getLogger("sluice.budget")
MAX_SESSIONS_PER_PERIOD = 10_000  # per budget and period; least recently used dropped beyond
MAX_PERIODS = 4096  # budget x period counters kept in memory; oldest dropped beyond
PAST_PERIODS = 12  # previous periods a budget's status lists (a year of monthly ones)
ZERO = Decimal(0)
MICRO = Decimal("0.000001")
PER_REQUEST = frozenset({"perRequest", "perRequestTokens"})  # limits of one call, not a period
TOKEN_KINDS = frozenset({"tokens", "perRequestTokens", "perSessionTokens"})


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # cost, tokens, perRequest, perSession, perRequestTokens, perSessionTokens
    limit: Decimal | int
    spent: Decimal | int


@dataclass(slots=True)
class Reservation:
    rule: BudgetRule
    period: Period
    cost: Decimal
    tokens: int
    session: str | None
    remaining: Decimal | None  # cost left after this reservation; None: no cost limit
    held_locally: bool = False  # a shared store fell back to the memory store for this one


def refusal(
    rule: BudgetRule,
    used_cost: Decimal,
    used_tokens: int,
    session_used: Decimal,
    cost: Decimal,
    tokens: int,
    session_tokens: int = 0,
) -> Refusal | None:
    """The one admission rule (the Redis Lua script implements the same).

    ``session_used``/``session_tokens``: what the call's session spent and holds reserved."""
    if rule.per_request is not None and cost > rule.per_request:
        return Refusal("perRequest", rule.per_request, cost)
    if rule.per_request_tokens is not None and tokens > rule.per_request_tokens:
        return Refusal("perRequestTokens", rule.per_request_tokens, tokens)
    limit = rule.cost_limit
    if limit is not None and (used_cost >= limit or used_cost + cost > limit):
        return Refusal("cost", limit, used_cost)
    if rule.token_limit is not None and (
        used_tokens >= rule.token_limit or used_tokens + tokens > rule.token_limit
    ):
        return Refusal("tokens", rule.token_limit, used_tokens)
    cap = rule.per_session
    if cap is not None and (session_used >= cap or session_used + cost > cap):
        return Refusal("perSession", cap, session_used)
    token_cap = rule.per_session_tokens
    if token_cap is not None and (
        session_tokens >= token_cap or session_tokens + tokens > token_cap
    ):
        return Refusal("perSessionTokens", token_cap, session_tokens)
    return None


class BudgetStore(Protocol):
    async def reserve(
        self, rule: BudgetRule, period: Period, cost: Decimal, tokens: int, session: str | None
    ) -> Refusal | Reservation: ...
    def settle(self, reservation: Reservation, cost: Decimal, tokens: int) -> Counters | None: ...
    async def counters(self, rule: BudgetRule, period: Period) -> Counters: ...
    async def past(self, rule: BudgetRule, periods: Sequence[Period]) -> list[Counters | None]:
        """Counters of earlier ``periods``; None where the store holds none."""
        ...


class MemoryBudgetStore:
    """Counters in this process. Every method runs without awaiting: atomic on the loop."""

    def __init__(self) -> None:
        self.periods: OrderedDict[tuple[str, str], Counters] = OrderedDict()
        self.dirty = False

    def get(self, identity: str, key: str) -> Counters:
        counters = self.periods.get((identity, key))
        if counters is None:
            self._forget_earlier_sessions(identity, key)
            counters = self.periods[(identity, key)] = Counters()
            if len(self.periods) > MAX_PERIODS:
                self.periods.popitem(last=False)
        return counters

    def _forget_earlier_sessions(self, identity: str, key: str) -> None:
        """A new period of a budget began: per-session spend of its earlier periods is never
        checked again, so it goes (up to 10,000 sessions a period would otherwise pile up, in
        memory and in every state-file write); their totals stay. Keys of one kind sort by
        time (``d:2026-11-22`` < ``d:2026-11-23``)."""
        for (other, earlier), c in self.periods.items():
            if other == identity and c.sessions and earlier[:2] == key[:2] and earlier < key:
                c.sessions.clear()

    def try_reserve(
        self, rule: BudgetRule, period: Period, cost: Decimal, tokens: int, session: str | None
    ) -> Refusal | Reservation:
        c = self.get(rule.identity, period.key)
        entry = _session_entry(c, session) if session is not None else None
        session_used = entry[0] + entry[1] if entry is not None else ZERO
        session_tokens = int(entry[2] + entry[3]) if entry is not None else 0
        refused = refusal(
            rule, c.used_cost, c.used_tokens, session_used, cost, tokens, session_tokens
        )
        if refused is not None and rule.hard:
            return refused
        c.reserved_cost += cost
        c.reserved_tokens += tokens
        if entry is not None:
            entry[1] += cost
            entry[3] += tokens
        remaining = None if rule.cost_limit is None else rule.cost_limit - c.used_cost
        return Reservation(rule, period, cost, tokens, session, remaining)

    async def reserve(
        self, rule: BudgetRule, period: Period, cost: Decimal, tokens: int, session: str | None
    ) -> Refusal | Reservation:
        return self.try_reserve(rule, period, cost, tokens, session)

    def settle(self, reservation: Reservation, cost: Decimal, tokens: int) -> Counters:
        c = self.get(reservation.rule.identity, reservation.period.key)
        c.reserved_cost -= reservation.cost
        c.reserved_tokens -= reservation.tokens
        c.spent += cost
        c.tokens += tokens
        if reservation.session is not None:
            entry = _session_entry(c, reservation.session)
            entry[1] -= reservation.cost
            entry[0] += cost
            entry[3] -= reservation.tokens
            entry[2] += tokens
        self.dirty = True
        return c

    async def counters(self, rule: BudgetRule, period: Period) -> Counters:
        return self.get(rule.identity, period.key)

    async def past(self, rule: BudgetRule, periods: Sequence[Period]) -> list[Counters | None]:
        return [self.periods.get((rule.identity, p.key)) for p in periods]

    def note_external(self, identity: str, key: str, cost: Decimal, tokens: int) -> None:
        """Spend known elsewhere (e.g. other replicas, from the operator); replaces the last."""
        c = self.get(identity, key)
        c.external_cost, c.external_tokens = cost, tokens

    # -- state file form ----------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        return {
            f"{identity}|{key}": {
                "spent": str(c.spent),
                "tokens": c.tokens,
                "sessions": {
                    s: [str(v[0]), int(v[2])] for s, v in c.sessions.items() if v[0] or v[2]
                },
            }
            for (identity, key), c in self.periods.items()
        }

    def load(self, document: dict[str, Any]) -> None:
        for name, row in document.items():
            identity, _, key = name.rpartition("|")
            c = self.get(identity, key)
            c.spent = Decimal(row.get("spent", "0"))
            c.tokens = int(row.get("tokens", 0))
            for session, spent in (row.get("sessions") or {}).items():
                # [spent, tokens]; a file written before session tokens holds spent only
                cost, tokens = spent if isinstance(spent, list) else (spent, 0)
                c.sessions[session] = [Decimal(cost), ZERO, Decimal(int(tokens)), ZERO]


def _session_entry(c: Counters, session: str) -> list[Decimal]:
    entry = c.sessions.get(session)
    if entry is None:
        entry = c.sessions[session] = [ZERO, ZERO, ZERO, ZERO]
        if len(c.sessions) > MAX_SESSIONS_PER_PERIOD:
            c.sessions.popitem(last=False)
    else:
        c.sessions.move_to_end(session)
    return entry


Observer = Callable[[BudgetRule, Period, Counters], None]


class BudgetLedger:
    """Admission and settlement over one store; threshold reports via ``observer``."""

    def __init__(
        self,
        store: BudgetStore,
        *,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        on_refusal: Callable[[BudgetRule, Refusal], None] | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.store = store
        self.now = now
        self._on_refusal = on_refusal
        self._observer = observer
        self._soft_warnings = ThrottledLog(logger)  # an exceeded soft budget: every call over it

    async def admit(
        self,
        rules: Sequence[BudgetRule],
        cost: Decimal,
        tokens: int,
        session: str | None,
        output: OutputBound | None = None,
    ) -> list[Reservation]:
        """Reserve ``cost`` and ``tokens`` in every rule, or refuse (``BudgetExceeded``).

        ``output`` (the call's output bound and where it comes from) only explains a refusal.
        """
        now = self.now()
        held: list[Reservation] = []
        for rule in rules:
            period = period_of(rule.spec.period, now)
            result = await self.store.reserve(rule, period, cost, tokens, session)
            if isinstance(result, Refusal):
                for reservation in held:
                    self.store.settle(reservation, ZERO, 0)
                if self._on_refusal is not None:
                    self._on_refusal(rule, result)
                raise _exceeded(rule, result, period, now, _Ask(cost, tokens, output))
            held.append(result)
            if not rule.hard:
                self._soft_check(rule, cost, tokens, result)
        return held

    def settle(self, reservations: Sequence[Reservation], cost: Decimal, tokens: int) -> None:
        for reservation in reservations:
            counters = self.store.settle(reservation, cost, tokens)
            if self._observer is not None and counters is not None:
                self._observer(reservation.rule, reservation.period, counters)

    async def level_of(self, rule: BudgetRule) -> BudgetLevel:
        """The budget's level in its current period, from its spend (not its reservations)."""
        c = await self.store.counters(rule, period_of(rule.spec.period, self.now()))
        return level(rule, utilization(rule, c))

    async def status(self, rules: Sequence[BudgetRule]) -> list[BudgetUsage]:
        now = self.now()
        rows = []
        for rule in rules:
            period = period_of(rule.spec.period, now)
            c = await self.store.counters(rule, period)
            earlier = previous_periods(rule.spec.period, period, PAST_PERIODS)
            past = zip(earlier, await self.store.past(rule, earlier), strict=True)
            kept = [(p, counters) for p, counters in past if counters is not None]
            rows.append(status_row(rule, period, c, kept))
        return rows

    def _soft_check(
        self, rule: BudgetRule, cost: Decimal, tokens: int, reservation: Reservation
    ) -> None:
        if reservation.remaining is not None and reservation.remaining < 0:
            self._soft_warnings.log(
                logging.WARNING,
                rule.identity,
                "budget %s exceeded (soft enforcement, call allowed): %s over its %s limit",
                rule.identity,
                -reservation.remaining,
                rule.cost_limit,
            )
            if self._on_refusal is not None:
                self._on_refusal(rule, Refusal("cost", rule.cost_limit or ZERO, ZERO))


def status_row(
    rule: BudgetRule, period: Period, c: Counters, past: Sequence[tuple[Period, Counters]] = ()
) -> BudgetUsage:
    share = utilization(rule, c)
    return BudgetUsage(
        budget=rule.identity,
        period=rule.spec.period,
        period_start=period.start.isoformat(),
        resets_at=period.resets_at.isoformat() if period.resets_at else None,
        enforcement=rule.spec.enforcement,
        limits=rule.spec.limits,
        spent_usd=c.spent,
        tokens=c.tokens,
        reserved_usd=c.reserved_cost,
        external_usd=c.external_cost,
        utilization=round(share, 4),
        state=level(rule, share),
        past_periods=[
            PastPeriod(
                period_start=earlier.start.isoformat(),
                spent_usd=p.spent + p.external_cost,
                tokens=p.tokens + p.external_tokens,
            )
            for earlier, p in past
            if p.spent or p.external_cost or p.tokens or p.external_tokens  # idle: left out
        ],
    )


@dataclass(frozen=True, slots=True)
class _Ask:
    """What the refused call asked to reserve."""

    cost: Decimal
    tokens: int
    output: OutputBound | None


def _exceeded(
    rule: BudgetRule, refused: Refusal, period: Period, now: dt.datetime, ask: _Ask
) -> Exception:
    reset = period.resets_at.isoformat() if period.resets_at else "never (period total)"
    details: dict[str, Any] = {
        "budget": rule.identity,
        "limit": str(refused.limit),
        "limitKind": refused.reason,
        "spent": str(refused.spent),
        "resetsAt": period.resets_at.isoformat() if period.resets_at else None,
    }
    too_big = _too_big_for_what_remains(refused, ask)
    if too_big is not None:
        message = f"budget {rule.identity}: {too_big}; resets {reset}"
        details["callCostUSD"] = str(ask.cost)
        details["callTokens"] = ask.tokens
        if ask.output is not None:
            details["maxOutputTokens"] = ask.output.tokens
    else:
        what = {
            "cost": "cost limit",
            "tokens": "token limit",
            "perRequest": "per-request cost cap (estimated cost of this call)",
            "perSession": "per-session cost cap",
            "perRequestTokens": "per-request token limit",
            "perSessionTokens": "per-session token limit",
        }[refused.reason]
        unit = " tokens" if refused.reason in TOKEN_KINDS else " USD"
        message = (
            f"budget {rule.identity} exceeded: {what} {refused.limit}{unit}, "
            f"{'this call' if refused.reason in PER_REQUEST else 'spent'} {refused.spent}{unit}"
            f"; resets {reset}"
        )
    # Waiting for the next period cannot make one call smaller.
    wait = period.seconds_to_reset(now) if refused.reason not in PER_REQUEST else None
    return BudgetExceeded(message, retry_after=wait, details=details)


def _too_big_for_what_remains(refused: Refusal, ask: _Ask) -> str | None:
    """The refusal said as the call's own worst case against what is left; None when the
    budget was used up before this call (then the plain "exceeded" message is the truth)."""
    if refused.reason not in PER_REQUEST and refused.spent >= refused.limit:
        return None
    bound = ask.output
    why = f" ({bound.tokens} output tokens at most, from {bound.source})" if bound else ""
    fit = "; set max_tokens to fit" if bound is not None and bound.tokens else ""
    if refused.reason == "perRequestTokens":
        return (
            f"this call could use up to {ask.tokens} tokens{why}, more than its per-request "
            f"limit of {refused.limit} tokens{fit}"
        )
    if refused.reason in TOKEN_KINDS:
        left = int(refused.limit) - int(refused.spent)
        limit = "token limit" if refused.reason == "tokens" else "per-session token limit"
        return (
            f"this call could use up to {ask.tokens} tokens{why}, more than the {left} that "
            f"remain of its {limit} of {refused.limit}{fit}"
        )
    if refused.reason == "perRequest":
        return (
            f"this call could cost up to ${_usd(ask.cost, ROUND_CEILING)}{why}, more than its "
            f"per-request cap of ${refused.limit}{fit}"
        )
    cap = "cost limit" if refused.reason == "cost" else "per-session cap"
    left_usd = _usd(Decimal(refused.limit) - Decimal(refused.spent), ROUND_FLOOR)
    return (
        f"this call could cost up to ${_usd(ask.cost, ROUND_CEILING)}{why}, more than the "
        f"${left_usd} that remains of its {cap} of ${refused.limit}{fit}"
    )


def _usd(amount: Decimal, rounding: str) -> str:
    """Dollars to the millionth, rounded the safe way, without trailing zeros."""
    return format(amount.quantize(MICRO, rounding=rounding).normalize(), "f")
