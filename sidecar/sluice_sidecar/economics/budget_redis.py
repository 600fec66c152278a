"""Budget counters in Redis, shared atomically by every replica of a workload.

Each (budget, period) is one hash ``sluice:budget:{budget}:{period}`` with integer fields
``spent`` and ``rcost`` (reserved) in nano-dollars (exact for amounts below about $9 million per
period, the precision of Lua numbers), ``tokens``, ``rtok``, and ``ext``/``exttok`` (spend
reported from elsewhere). Sessions have their own hash (``spent``, ``rcost``, ``tokens``,
``rtok``). ``RESERVE`` runs the same admission rule
as ``budgets.refusal`` inside one Lua script, so the check and the reservation are atomic
across replicas: N replicas admitting at once cannot overspend beyond what their reservations
allow (one reservation per replica in flight when actual costs exceed estimates). ``SETTLE``
swaps a reservation for the actual spend. A session's key expires a day after its period resets;
a budget's own key is kept ``PAST_PERIODS`` periods longer, so its status can list them.

Redis unavailable: the call is admitted against the local memory store instead (enforcement
continues per replica), ``sluice_redis_errors_total{use="budget"}`` counts it, no call fails.
A settlement Redis did not take is kept (at most ``MAX_UNSENT_SETTLEMENTS``, oldest first) and
sent again with backoff until Redis takes it, and once more at shutdown: spend is not lost to an
outage, and the reservation it replaces does not stay held in Redis. Failures are logged at
most once a minute per kind of operation.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Sequence
from decimal import ROUND_CEILING, Decimal

import redis.asyncio
from redis.exceptions import RedisError

from sluice_sidecar.contract.budget_maths import BudgetRule, Counters
from sluice_sidecar.contract.periods import Period
from sluice_sidecar.economics.budgets import PAST_PERIODS, MemoryBudgetStore, Refusal, Reservation
from sluice_sidecar.observability.throttled_log import ThrottledLog

logger = logging.getLogger("sluice.budget")
NANO = Decimal(1_000_000_000)
EXPIRE_AFTER_RESET_S = 86_400
MAX_PENDING_SETTLEMENTS = 10_000
MAX_UNSENT_SETTLEMENTS = 100_000  # ~200 bytes each: an outage of hours at a few calls a second
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0

Settlement = tuple[Reservation, Decimal, int]  # the reservation, actual cost, actual tokens
# A counter field as Redis answers it: bytes/str from HMGET, int from a script, None if unset.
HashValue = bytes | str | int | None

RESERVE = """
local h = redis.call('HMGET', KEYS[1], 'spent', 'tokens', 'rcost', 'rtok', 'ext', 'exttok')
local spent = tonumber(h[1] or '0') + tonumber(h[5] or '0')
local used = spent + tonumber(h[3] or '0')
local tokens = tonumber(h[2] or '0') + tonumber(h[6] or '0')
local utok = tokens + tonumber(h[4] or '0')
local cost, tok = tonumber(ARGV[1]), tonumber(ARGV[2])
local climit, tlimit = tonumber(ARGV[3]), tonumber(ARGV[4])
local slimit, preq = tonumber(ARGV[5]), tonumber(ARGV[6])
local hard, ttl, session = ARGV[7] == '1', tonumber(ARGV[8]), ARGV[9] == '1'
local preqtok, stoklimit = tonumber(ARGV[10]), tonumber(ARGV[11])
local sttl = tonumber(ARGV[12])
local sused, stok = 0, 0
if session then
  local s = redis.call('HMGET', KEYS[2], 'spent', 'rcost', 'tokens', 'rtok')
  sused = tonumber(s[1] or '0') + tonumber(s[2] or '0')
  stok = tonumber(s[3] or '0') + tonumber(s[4] or '0')
end
local reason, limit, seen = '', 0, 0
if preq >= 0 and cost > preq then reason, limit, seen = 'perRequest', preq, cost
elseif preqtok >= 0 and tok > preqtok then reason, limit, seen = 'perRequestTokens', preqtok, tok
elseif climit >= 0 and (used >= climit or used + cost > climit) then
  reason, limit, seen = 'cost', climit, used
elseif tlimit >= 0 and (utok >= tlimit or utok + tok > tlimit) then
  reason, limit, seen = 'tokens', tlimit, utok
elseif session and slimit >= 0 and (sused >= slimit or sused + cost > slimit) then
  reason, limit, seen = 'perSession', slimit, sused
elseif session and stoklimit >= 0 and (stok >= stoklimit or stok + tok > stoklimit) then
  reason, limit, seen = 'perSessionTokens', stoklimit, stok
end
if reason ~= '' and hard then return {0, reason, tostring(limit), tostring(seen)} end
redis.call('HINCRBY', KEYS[1], 'rcost', cost)
redis.call('HINCRBY', KEYS[1], 'rtok', tok)
if session then
  redis.call('HINCRBY', KEYS[2], 'rcost', cost)
  redis.call('HINCRBY', KEYS[2], 'rtok', tok)
end
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  if session then redis.call('EXPIRE', KEYS[2], sttl) end
end
return {1, reason, tostring(climit), tostring(used + cost)}
"""

SETTLE = """
redis.call('HINCRBY', KEYS[1], 'rcost', -tonumber(ARGV[1]))
redis.call('HINCRBY', KEYS[1], 'rtok', -tonumber(ARGV[2]))
redis.call('HINCRBY', KEYS[1], 'spent', tonumber(ARGV[3]))
redis.call('HINCRBY', KEYS[1], 'tokens', tonumber(ARGV[4]))
if ARGV[5] == '1' then
  redis.call('HINCRBY', KEYS[2], 'rcost', -tonumber(ARGV[1]))
  redis.call('HINCRBY', KEYS[2], 'spent', tonumber(ARGV[3]))
  redis.call('HINCRBY', KEYS[2], 'rtok', -tonumber(ARGV[2]))
  redis.call('HINCRBY', KEYS[2], 'tokens', tonumber(ARGV[4]))
end
return redis.call('HMGET', KEYS[1], 'spent', 'tokens', 'rcost', 'rtok', 'ext', 'exttok')
"""
COUNTER_FIELDS = ["spent", "tokens", "rcost", "rtok", "ext", "exttok"]  # in _counters' order
# Refusal kinds whose limit and figure are token counts (the others are nano-dollars).
TOKEN_REASONS = frozenset({"tokens", "perRequestTokens", "perSessionTokens"})


def to_nano(amount: Decimal) -> int:
    return int((amount * NANO).to_integral_value(rounding=ROUND_CEILING))


def from_nano(value: HashValue) -> Decimal:
    return Decimal(int(value or 0)) / NANO


class RedisBudgetStore:
    def __init__(
        self,
        client: redis.asyncio.Redis,
        fallback: MemoryBudgetStore,
        *,
        on_error: Callable[[], None],
        observer: Callable[[BudgetRule, Period, Counters], None] | None = None,
    ) -> None:
        self._client = client
        self._fallback = fallback
        self._on_error = on_error
        self._observer = observer
        self._reserve = client.register_script(RESERVE)
        self._settle = client.register_script(SETTLE)
        self._pending: set[asyncio.Task[None]] = set()
        self._unsent: collections.deque[Settlement] = collections.deque()
        self._retrying: asyncio.Task[None] | None = None
        self._log = ThrottledLog(logger)
        self.lost_settlements = 0  # dropped because too many were waiting for Redis

    async def reserve(
        self, rule: BudgetRule, period: Period, cost: Decimal, tokens: int, session: str | None
    ) -> Refusal | Reservation:
        keys = _keys(rule, period, session)
        args = [
            to_nano(cost),
            tokens,
            _limit(rule.cost_limit),
            _count(rule.token_limit),
            _limit(rule.per_session),
            _limit(rule.per_request),
            "1" if rule.hard else "0",
            _ttl(period, PAST_PERIODS),
            "1" if session is not None else "0",
            _count(rule.per_request_tokens),
            _count(rule.per_session_tokens),
            _ttl(period),
        ]
        try:
            ok, reason, limit, seen = await self._reserve(keys=keys, args=args)
        except (RedisError, OSError) as error:
            self._failed("reserve", error)
            result = self._fallback.try_reserve(rule, period, cost, tokens, session)
            if isinstance(result, Reservation):
                result.held_locally = True
            return result
        if not int(ok):
            reason = reason.decode() if isinstance(reason, bytes) else reason
            tokens_kind = reason in TOKEN_REASONS
            return Refusal(
                reason,
                int(limit) if tokens_kind else from_nano(limit),
                int(seen) if tokens_kind else from_nano(seen),
            )
        remaining = None
        if rule.cost_limit is not None:
            remaining = rule.cost_limit - from_nano(seen)
        return Reservation(rule, period, cost, tokens, session, remaining)

    def settle(self, reservation: Reservation, cost: Decimal, tokens: int) -> Counters | None:
        if reservation.held_locally:
            return self._fallback.settle(reservation, cost, tokens)
        if len(self._pending) >= MAX_PENDING_SETTLEMENTS or self._unsent:
            self._keep((reservation, cost, tokens))  # in order, behind those already waiting
            return None
        task = asyncio.get_running_loop().create_task(self._send(reservation, cost, tokens))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return None

    async def _send(self, reservation: Reservation, cost: Decimal, tokens: int) -> None:
        try:
            await self._settle_in_redis(reservation, cost, tokens)
        except (RedisError, OSError) as error:
            self._failed("settle", error)
            self._keep((reservation, cost, tokens))

    async def _settle_in_redis(self, reservation: Reservation, cost: Decimal, tokens: int) -> None:
        keys = _keys(reservation.rule, reservation.period, reservation.session)
        args = [
            to_nano(reservation.cost),
            reservation.tokens,
            to_nano(cost),
            tokens,
            "1" if reservation.session is not None else "0",
        ]
        values = await self._settle(keys=keys, args=args)
        if self._observer is not None:
            self._observer(reservation.rule, reservation.period, _counters(values))

    def _keep(self, settlement: Settlement) -> None:
        """Hold a settlement Redis has not taken yet; the retry task sends it later."""
        if len(self._unsent) >= MAX_UNSENT_SETTLEMENTS:
            self._unsent.popleft()
            self.lost_settlements += 1
            self._failed("settle", RuntimeError("too many settlements waiting; oldest dropped"))
        self._unsent.append(settlement)
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.get_running_loop().create_task(
                self._retry(), name="sluice-budget-settle-retry"
            )

    async def _retry(self) -> None:
        wait = RETRY_FIRST_S
        while self._unsent:
            await asyncio.sleep(wait)
            sent = await self._send_unsent()
            wait = RETRY_FIRST_S if sent else min(wait * 2, RETRY_MAX_S)

    async def _send_unsent(self) -> bool:
        """Send the waiting settlements in order; False when Redis failed again."""
        while self._unsent:
            reservation, cost, tokens = self._unsent[0]
            try:
                await self._settle_in_redis(reservation, cost, tokens)
            except (RedisError, OSError) as error:
                self._failed("settle", error)
                return False
            self._unsent.popleft()
        return True

    async def drain(self) -> None:
        """Wait for settlements in flight, and give the waiting ones one more try (shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        if self._retrying is not None:
            self._retrying.cancel()
            await asyncio.gather(self._retrying, return_exceptions=True)
            self._retrying = None
        if self._unsent and not await self._send_unsent():
            logger.error(
                "%d budget settlement(s) could not be written to Redis before shutdown",
                len(self._unsent),
            )

    @property
    def unsent(self) -> int:
        return len(self._unsent)

    async def counters(self, rule: BudgetRule, period: Period) -> Counters:
        try:
            values = await self._client.hmget(_keys(rule, period, None)[0], COUNTER_FIELDS)
        except (RedisError, OSError) as error:
            self._failed("read", error)
            return await self._fallback.counters(rule, period)
        return _counters(values)

    async def past(self, rule: BudgetRule, periods: Sequence[Period]) -> list[Counters | None]:
        if not periods:
            return []
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for period in periods:
                    pipe.hmget(_keys(rule, period, None)[0], COUNTER_FIELDS)
                answers = await pipe.execute()
        except (RedisError, OSError) as error:
            self._failed("read", error)
            return await self._fallback.past(rule, periods)
        return [None if all(v is None for v in a) else _counters(a) for a in answers]

    async def note_external(self, rule: BudgetRule, period: Period, cost: Decimal, tokens: int):
        """Spend known elsewhere (the operator's aggregate, later); replaces the last report."""
        key = _keys(rule, period, None)[0]
        try:
            await self._client.hset(key, mapping={"ext": to_nano(cost), "exttok": tokens})
        except (RedisError, OSError) as error:
            self._failed("external", error)
            self._fallback.note_external(rule.identity, period.key, cost, tokens)

    def _failed(self, what: str, error: BaseException) -> None:
        self._on_error()
        self._log.log(
            logging.WARNING,
            what,
            "budget %s in Redis failed (using local counters): %s",
            what,
            error,
        )


def _keys(rule: BudgetRule, period: Period, session: str | None) -> list[str]:
    base = f"sluice:budget:{rule.identity}:{period.key}"
    return [base, f"{base}:session:{session}" if session is not None else f"{base}:session:-"]


def _limit(amount: Decimal | None) -> int:
    return -1 if amount is None else to_nano(amount)


def _count(limit: int | None) -> int:
    return -1 if limit is None else limit


def _ttl(period: Period, kept_after: int = 0) -> int:
    """Seconds a key is kept after its last write: the period's length plus a day, and
    ``kept_after`` periods more."""
    if period.resets_at is None:
        return -1
    length = int((period.resets_at - period.start).total_seconds())
    return length * (1 + kept_after) + EXPIRE_AFTER_RESET_S


def _counters(values: Sequence[HashValue]) -> Counters:
    spent, tokens, rcost, rtok, ext, exttok = values
    return Counters(
        spent=from_nano(spent),
        tokens=int(tokens or 0),
        reserved_cost=from_nano(rcost),
        reserved_tokens=int(rtok or 0),
        external_cost=from_nano(ext),
        external_tokens=int(exttok or 0),
    )
