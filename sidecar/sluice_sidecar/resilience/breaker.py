"""Circuit breaker with a bulkhead, one per provider (or provider and model).

States: closed (calls flow), open (calls refused until the open time passes), half-open (a
trial call is let through; ``successThreshold`` successes close, one failure reopens). It trips
on ``failureThreshold`` consecutive failures, or on a failure rate at or above
``failureRateThreshold`` over the last ``windowSeconds`` once ``minimumRequests`` calls were
seen. Each consecutive trip multiplies the open time by ``openBackoffMultiplier`` up to
``maxOpenSeconds``; a close resets that.

The bulkhead bounds calls in flight through one breaker; a full bulkhead refuses at once.
Time comes from an injectable clock so tests run on virtual time.

Every state change is also kept, with its reason, in the registry's ``TransitionLog``: bounded
and numbered, so a reader polling now and then (the operator, which turns them into Kubernetes
Events) asks for what came after the last number it saw and misses nothing between two polls.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sluice_sidecar.contract.model import CircuitBreakerSpec

logger = logging.getLogger("sluice.breaker")

MAX_WINDOW_EVENTS = 1024
# State changes kept for readers of the log: with the operator polling every 15 s, a circuit
# would have to change state 17 times a second for a change to fall out between two polls.
MAX_TRANSITIONS = 256


class State(enum.IntEnum):
    """Numeric values are what the ``llm_circuit_breaker_state`` gauge reports."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


StateListener = Callable[["CircuitBreaker", State, State], None]


@dataclass(frozen=True, slots=True)
class BreakerKey:
    provider: str
    model: str  # "*" when the scope is the whole provider

    def __str__(self) -> str:
        return self.provider if self.model == "*" else f"{self.provider}/{self.model}"


def state_name(state: State) -> str:
    """As ``GET /admin/circuits`` and the transition log spell it: closed, half-open, open."""
    return state.name.lower().replace("_", "-")


@dataclass(frozen=True, slots=True)
class Transition:
    sequence: int
    at: float  # wall-clock time (Unix seconds)
    key: BreakerKey
    old: State
    new: State
    reason: str

    def as_json(self) -> dict[str, object]:
        return {
            "sequence": self.sequence,
            "time": dt.datetime.fromtimestamp(self.at, dt.UTC).isoformat(),
            "provider": self.key.provider,
            "model": self.key.model,
            "from": state_name(self.old),
            "to": state_name(self.new),
            "reason": self.reason,
        }


class TransitionLog:
    """The last ``MAX_TRANSITIONS`` state changes of every breaker, numbered from 1.

    ``log_id`` is drawn per process: numbers start again when the sidecar restarts, and a reader
    that sees another id knows its last number means nothing here any more.
    """

    def __init__(
        self, *, wall_clock: Callable[[], float] = time.time, capacity: int = MAX_TRANSITIONS
    ) -> None:
        self.log_id = secrets.token_hex(8)
        self._wall_clock = wall_clock
        self._entries: deque[Transition] = deque(maxlen=capacity)
        self.last_sequence = 0

    def record(self, key: BreakerKey, old: State, new: State, reason: str) -> None:
        self.last_sequence += 1
        self._entries.append(
            Transition(self.last_sequence, self._wall_clock(), key, old, new, reason)
        )

    def after(self, sequence: int, limit: int = MAX_TRANSITIONS) -> list[Transition]:
        """The changes numbered above ``sequence``, oldest first, at most ``limit``."""
        newer = [t for t in self._entries if t.sequence > sequence]
        return newer[:limit]

    def answer(self, sequence: int, limit: int = MAX_TRANSITIONS) -> dict[str, Any]:
        """``GET /admin/circuits/transitions``: ``missed`` counts the changes after ``sequence``
        that were dropped before anyone asked (the log is bounded)."""
        kept = self.after(sequence, limit)
        first = self._entries[0].sequence if self._entries else self.last_sequence + 1
        return {
            "logId": self.log_id,
            "lastSequence": self.last_sequence,
            "missed": max(first - 1 - sequence, 0),
            "transitions": [t.as_json() for t in kept],
        }


class CircuitBreaker:
    def __init__(
        self,
        key: BreakerKey,
        spec: CircuitBreakerSpec,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_state_change: StateListener | None = None,
        transitions: TransitionLog | None = None,
    ) -> None:
        self.key = key
        self.spec = spec
        self._clock = clock
        self._on_state_change = on_state_change
        self._transitions = transitions
        self.state = State.CLOSED
        self.in_flight = 0
        self.trips = 0
        self._consecutive_trips = 0
        self._consecutive_failures = 0
        self._half_open_successes = 0
        self._half_open_trial = False
        self._opened_at = 0.0
        self._open_for = spec.open_seconds
        self._window: deque[tuple[float, bool]] = deque(maxlen=MAX_WINDOW_EVENTS)

    # -- admission -------------------------------------------------------------------------
    def retry_after(self) -> float:
        """Seconds until an open breaker lets a trial call through (0 when not open)."""
        if self.state is not State.OPEN:
            return 0.0
        return max(self._opened_at + self._open_for - self._clock(), 0.0)

    def allows_call(self) -> bool:
        """Whether a call may start now. Moves open to half-open when the open time is over."""
        if not self.spec.enabled:
            return True
        if self.state is State.OPEN:
            if self.retry_after() > 0:
                return False
            self._transition(State.HALF_OPEN, f"open for {self._open_for:g}s; a trial call may go")
        if self.state is State.HALF_OPEN:
            # One trial call at a time; the rest keep failing fast until it reports.
            return not self._half_open_trial
        return True

    def bulkhead_full(self) -> bool:
        limit = self.spec.max_concurrent
        return limit is not None and self.in_flight >= limit

    def acquire(self) -> None:
        self.in_flight += 1
        if self.state is State.HALF_OPEN:
            self._half_open_trial = True

    def release(self) -> None:
        self.in_flight -= 1

    # -- outcomes --------------------------------------------------------------------------
    def record_success(self) -> None:
        self._record(True)
        self._consecutive_failures = 0
        if self.state is State.HALF_OPEN:
            self._half_open_trial = False
            self._half_open_successes += 1
            if self._half_open_successes >= self.spec.success_threshold:
                self._consecutive_trips = 0
                self._transition(
                    State.CLOSED, f"{self._half_open_successes} successful trial call(s)"
                )

    def record_failure(self) -> None:
        self._record(False)
        self._consecutive_failures += 1
        if self.state is State.HALF_OPEN:
            self._half_open_trial = False
            self._trip("trial call failed while half-open")
        elif self.state is State.CLOSED and self.spec.enabled:
            if self._consecutive_failures >= self.spec.failure_threshold:
                self._trip(f"{self._consecutive_failures} consecutive failures")
            elif (rate := self._tripping_rate()) is not None:
                self._trip(f"failure rate {rate:.0%} over {self.spec.window_seconds:g}s")

    def record_neutral(self) -> None:
        """A call ended without saying anything about the provider's health (e.g. cancelled)."""
        if self.state is State.HALF_OPEN:
            self._half_open_trial = False

    def failure_rate(self) -> float:
        self._expire()
        if not self._window:
            return 0.0
        return sum(1 for _, ok in self._window if not ok) / len(self._window)

    def reset(self, reason: str = "reset") -> None:
        self._consecutive_trips = 0
        self._consecutive_failures = 0
        self._window.clear()
        self._open_for = self.spec.open_seconds
        self._transition(State.CLOSED, reason)

    def reconfigure(self, spec: CircuitBreakerSpec) -> None:
        self.spec = spec
        if not spec.enabled and self.state is not State.CLOSED:
            self.reset("circuit breaker disabled by the configuration")

    def snapshot(self) -> dict[str, object]:
        return {
            "provider": self.key.provider,
            "model": self.key.model,
            "state": state_name(self.state),
            "inFlight": self.in_flight,
            "trips": self.trips,
            "consecutiveFailures": self._consecutive_failures,
            "failureRate": round(self.failure_rate(), 4),
            "retryAfterSeconds": round(self.retry_after(), 3),
        }

    # -- internals -------------------------------------------------------------------------
    def _record(self, ok: bool) -> None:
        self._window.append((self._clock(), ok))

    def _expire(self) -> None:
        horizon = self._clock() - self.spec.window_seconds
        while self._window and self._window[0][0] < horizon:
            self._window.popleft()

    def _tripping_rate(self) -> float | None:
        threshold = self.spec.failure_rate_threshold
        if threshold is None:
            return None
        self._expire()
        if len(self._window) < self.spec.minimum_requests:
            return None
        rate = self.failure_rate()
        return rate if rate >= threshold else None

    def _trip(self, why: str) -> None:
        self._open_for = min(
            self.spec.open_seconds * self.spec.open_backoff_multiplier**self._consecutive_trips,
            self.spec.max_open_seconds,
        )
        self._consecutive_trips += 1
        self.trips += 1
        self._opened_at = self._clock()
        self._half_open_successes = 0
        logger.warning(
            "circuit %s opened: %s; refusing calls for %.1fs", self.key, why, self._open_for
        )
        self._transition(State.OPEN, why)

    def _transition(self, new: State, reason: str) -> None:
        old = self.state
        if old is new:
            return
        self.state = new
        if new is State.HALF_OPEN:
            self._half_open_successes = 0
            self._half_open_trial = False
        if new is State.CLOSED:
            self._consecutive_failures = 0
            self._open_for = self.spec.open_seconds
        logger.info("circuit %s: %s -> %s", self.key, old.name.lower(), new.name.lower())
        if self._transitions is not None:
            self._transitions.record(self.key, old, new, reason)
        if self._on_state_change is not None:
            self._on_state_change(self, old, new)


class BreakerRegistry:
    """Every breaker of the sidecar. Outlives configuration swaps, so state is kept."""

    def __init__(
        self,
        spec: CircuitBreakerSpec,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_state_change: StateListener | None = None,
        max_breakers: int = 4096,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self._clock = clock
        self._on_state_change = on_state_change
        self.transitions = TransitionLog(wall_clock=wall_clock)
        self._max = max_breakers
        self._breakers: dict[BreakerKey, CircuitBreaker] = {}

    def key_for(self, provider: str, model: str) -> BreakerKey:
        return BreakerKey(provider, model if self.spec.scope == "provider-model" else "*")

    def get(self, provider: str, model: str) -> CircuitBreaker:
        key = self.key_for(provider, model)
        breaker = self._breakers.get(key)
        if breaker is None:
            if len(self._breakers) >= self._max:
                # Model names come from callers: never let them grow this without bound.
                key = BreakerKey(provider, "*")
                breaker = self._breakers.get(key)
            if breaker is None:
                breaker = CircuitBreaker(
                    key,
                    self.spec,
                    clock=self._clock,
                    on_state_change=self._on_state_change,
                    transitions=self.transitions,
                )
                self._breakers[key] = breaker
        return breaker

    def reconfigure(self, spec: CircuitBreakerSpec) -> None:
        if spec.scope != self.spec.scope:
            self._breakers.clear()
        self.spec = spec
        for breaker in self._breakers.values():
            breaker.reconfigure(spec)

    def all(self) -> list[CircuitBreaker]:
        return list(self._breakers.values())

    def reset(self, provider: str | None = None, model: str | None = None) -> int:
        count = 0
        for breaker in self._breakers.values():
            if provider not in (None, breaker.key.provider):
                continue
            if model not in (None, breaker.key.model):
                continue
            breaker.reset("reset through POST /admin/circuits/reset")
            count += 1
        return count
