"""Circuit breaker with a bulkhead, one per provider (or provider and model).

States: closed (calls flow), open (calls refused until the open time passes), half-open (a
trial call is let through; ``successThreshold`` successes close, one failure reopens). It trips
on ``failureThreshold`` consecutive failures, or on a failure rate at or above
``failureRateThreshold`` over the last ``windowSeconds`` once ``minimumRequests`` calls were
seen. Each consecutive trip multiplies the open time by ``openBackoffMultiplier`` up to
``maxOpenSeconds``; a close resets that.

The bulkhead bounds calls in flight through one breaker; a full bulkhead refuses at once.
Time comes from an injectable clock so tests run on virtual time.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sluice_sidecar.contract.model import CircuitBreakerSpec

logger = logging.getLogger("sluice.breaker")

MAX_WINDOW_EVENTS = 1024


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


class CircuitBreaker:
    def __init__(
        self,
        key: BreakerKey,
        spec: CircuitBreakerSpec,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_state_change: StateListener | None = None,
    ) -> None:
        self.key = key
        self.spec = spec
        self._clock = clock
        self._on_state_change = on_state_change
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
            self._transition(State.HALF_OPEN)
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
                self._transition(State.CLOSED)

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

    def reset(self) -> None:
        self._consecutive_trips = 0
        self._consecutive_failures = 0
        self._window.clear()
        self._open_for = self.spec.open_seconds
        self._transition(State.CLOSED)

    def reconfigure(self, spec: CircuitBreakerSpec) -> None:
        self.spec = spec
        if not spec.enabled and self.state is not State.CLOSED:
            self.reset()

    def snapshot(self) -> dict[str, object]:
        return {
            "provider": self.key.provider,
            "model": self.key.model,
            "state": self.state.name.lower().replace("_", "-"),
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
        self._transition(State.OPEN)

    def _transition(self, new: State) -> None:
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
    ) -> None:
        self.spec = spec
        self._clock = clock
        self._on_state_change = on_state_change
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
                    key, self.spec, clock=self._clock, on_state_change=self._on_state_change
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
            breaker.reset()
            count += 1
        return count
