"""The breakers' transition log: numbered, bounded, with the reason of each change (unit)."""

from __future__ import annotations

from sluice_sidecar.contract.model import CircuitBreakerSpec
from sluice_sidecar.resilience.breaker import BreakerKey, BreakerRegistry, State, TransitionLog
from tests.support.sidecar import VirtualClock

SPEC = {
    "failureThreshold": 2,
    "failureRateThreshold": None,
    "openSeconds": 10,
    "successThreshold": 1,
    "scope": "provider",
}


def registry(clock: VirtualClock) -> BreakerRegistry:
    return BreakerRegistry(
        CircuitBreakerSpec.model_validate(SPEC), clock=clock, wall_clock=lambda: 1_700_000_000.0
    )


def test_a_full_cycle_is_logged_in_order_with_reasons() -> None:
    clock = VirtualClock()
    breakers = registry(clock)
    b = breakers.get("sim", "gpt-4o")
    b.record_failure()
    b.record_failure()
    clock.advance(10)
    assert b.allows_call()
    b.acquire()
    b.record_success()
    answer = breakers.transitions.answer(0)
    moves = [(t["sequence"], t["from"], t["to"]) for t in answer["transitions"]]
    assert moves == [(1, "closed", "open"), (2, "open", "half-open"), (3, "half-open", "closed")]
    reasons = [t["reason"] for t in answer["transitions"]]
    assert reasons == [
        "2 consecutive failures",
        "open for 10s; a trial call may go",
        "1 successful trial call(s)",
    ]
    first = answer["transitions"][0]
    assert first["provider"] == "sim" and first["model"] == "*"
    assert first["time"] == "2023-11-14T22:13:20+00:00"
    assert answer["lastSequence"] == 3 and answer["missed"] == 0


def test_a_reader_gets_only_what_came_after_its_last_number() -> None:
    clock = VirtualClock()
    breakers = registry(clock)
    b = breakers.get("sim", "m")
    b.record_failure()
    b.record_failure()
    seen = breakers.transitions.answer(0)["lastSequence"]
    assert breakers.transitions.answer(seen)["transitions"] == []
    breakers.reset("sim")
    newer = breakers.transitions.answer(seen)
    assert [(t["from"], t["to"], t["reason"]) for t in newer["transitions"]] == [
        ("open", "closed", "reset through POST /admin/circuits/reset")
    ]


def test_the_log_is_bounded_and_says_how_many_changes_a_late_reader_missed() -> None:
    log = TransitionLog(capacity=4)
    key = BreakerKey("sim", "*")
    for _ in range(5):  # ten changes
        log.record(key, State.CLOSED, State.OPEN, "failing")
        log.record(key, State.OPEN, State.CLOSED, "reset")
    answer = log.answer(2)
    assert answer["lastSequence"] == 10
    assert [t["sequence"] for t in answer["transitions"]] == [7, 8, 9, 10]
    assert answer["missed"] == 4  # 3, 4, 5 and 6 fell out before this reader asked
    assert log.answer(10) == {**answer, "missed": 0, "transitions": []}


def test_each_process_has_its_own_log_id() -> None:
    assert TransitionLog().log_id != TransitionLog().log_id
