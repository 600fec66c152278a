"""Circuit breaker state machine on virtual time (unit)."""

from __future__ import annotations

from sluice_sidecar.contract.model import CircuitBreakerSpec
from sluice_sidecar.resilience.breaker import BreakerKey, BreakerRegistry, CircuitBreaker, State
from tests.support.sidecar import VirtualClock


def breaker(clock: VirtualClock, **spec: object) -> tuple[CircuitBreaker, list[tuple[str, str]]]:
    changes: list[tuple[str, str]] = []
    b = CircuitBreaker(
        BreakerKey("openai", "gpt-4o"),
        CircuitBreakerSpec.model_validate(spec),
        clock=clock,
        on_state_change=lambda _b, old, new: changes.append((old.name, new.name)),
    )
    return b, changes


def test_opens_after_consecutive_failures_and_refuses() -> None:
    clock = VirtualClock()
    b, changes = breaker(clock, failureThreshold=3, failureRateThreshold=None, openSeconds=10)
    for _ in range(2):
        b.record_failure()
    assert b.allows_call()
    b.record_failure()
    assert b.state is State.OPEN and not b.allows_call()
    assert b.retry_after() == 10
    assert changes == [("CLOSED", "OPEN")]


def test_success_resets_the_consecutive_count() -> None:
    b, _ = breaker(VirtualClock(), failureThreshold=2, failureRateThreshold=None)
    for _ in range(5):
        b.record_failure()
        b.record_success()
    assert b.state is State.CLOSED


def test_opens_on_failure_rate_in_window() -> None:
    clock = VirtualClock()
    b, _ = breaker(
        clock, failureThreshold=100, failureRateThreshold=0.5, minimumRequests=10, windowSeconds=60
    )
    for _ in range(5):
        b.record_success()
        b.record_failure()
        clock.advance(1)
    assert b.state is State.OPEN


def test_old_failures_leave_the_window() -> None:
    clock = VirtualClock()
    b, _ = breaker(clock, failureThreshold=100, minimumRequests=4, windowSeconds=10)
    for _ in range(3):
        b.record_failure()
    clock.advance(11)
    b.record_success()
    b.record_success()
    b.record_failure()
    assert b.state is State.CLOSED and b.failure_rate() == 1 / 3


def test_half_open_lets_one_trial_and_closes_after_successes() -> None:
    clock = VirtualClock()
    b, changes = breaker(clock, failureThreshold=1, successThreshold=2, openSeconds=5)
    b.record_failure()
    clock.advance(5)
    assert b.allows_call() and b.state is State.HALF_OPEN
    b.acquire()
    assert not b.allows_call()  # one trial at a time
    b.release()
    b.record_success()
    assert b.state is State.HALF_OPEN and b.allows_call()
    b.acquire()
    b.release()
    b.record_success()
    assert b.state is State.CLOSED
    assert changes == [("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED")]


def test_repeated_trips_lengthen_the_open_time_up_to_the_cap() -> None:
    clock = VirtualClock()
    b, _ = breaker(
        clock, failureThreshold=1, openSeconds=10, openBackoffMultiplier=2, maxOpenSeconds=30
    )
    waits = []
    for _ in range(4):
        b.record_failure()  # trips (closed) or re-trips (half-open trial failed)
        waits.append(b.retry_after())
        clock.advance(b.retry_after())
        assert b.allows_call()
        b.acquire()
        b.release()
    assert waits == [10, 20, 30, 30]
    b.record_success()
    b.record_success()
    assert b.state is State.CLOSED
    b.record_failure()
    assert b.retry_after() == 10  # closing reset the backoff


def test_bulkhead_counts_calls_in_flight() -> None:
    b, _ = breaker(VirtualClock(), maxConcurrent=2)
    b.acquire()
    assert not b.bulkhead_full()
    b.acquire()
    assert b.bulkhead_full()
    b.release()
    assert not b.bulkhead_full()


def test_registry_scopes_and_bounds() -> None:
    per_provider = BreakerRegistry(CircuitBreakerSpec(scope="provider"))
    assert per_provider.get("openai", "a") is per_provider.get("openai", "b")
    per_model = BreakerRegistry(CircuitBreakerSpec(), max_breakers=2)
    assert per_model.get("openai", "a") is not per_model.get("openai", "b")
    # Past the bound, caller-chosen model names share the provider-wide breaker.
    assert per_model.get("openai", "c") is per_model.get("openai", "d")
    assert len(per_model.all()) == 3


def test_disabled_breaker_never_refuses() -> None:
    b, _ = breaker(VirtualClock(), enabled=False, failureThreshold=1)
    for _ in range(10):
        b.record_failure()
        assert b.allows_call()
