"""The latency model: confidence from consistency, its saved form, the performance summary."""

from __future__ import annotations

import math

import pytest

from sluice_sidecar.economics.latency_model import MAX_KEYS, POINTS, LatencyHistory
from sluice_sidecar.economics.stats import CallStats


def history_of(durations: list[float]) -> LatencyHistory:
    history = LatencyHistory()
    for duration in durations:
        history.record("p", "op", 100, duration)
    return history


def test_a_noisy_history_lowers_confidence() -> None:
    steady = history_of([2.0 + (i % 5) / 20 for i in range(60)])
    noisy = history_of([0.5 if i % 2 else 6.0 for i in range(60)])
    steady_confidence = steady.predict("p", "op", 100).confidence
    noisy_confidence = noisy.predict("p", "op", 100).confidence
    assert steady_confidence >= 0.8  # 60 consistent points: high confidence
    assert noisy_confidence <= steady_confidence / 2 + 0.05


def test_history_round_trips_through_its_saved_form() -> None:
    history = history_of([1.0, 2.0, 3.0])
    history.record("q", "other", 50, 0.5)
    restored = LatencyHistory()
    assert restored.load(history.dump()) == 4
    for key in (("p", "op", 100), ("q", "other", 50)):
        assert restored.predict(*key) == history.predict(*key)


@pytest.mark.parametrize(
    "rows",
    [
        None,
        "text",
        [5, None, "row"],
        [{"provider": 5, "operation": "op", "points": [[1, 1.0]]}],
        [{"provider": "p", "operation": "op", "points": "many"}],
        [{"provider": "p", "operation": "op", "points": [[1, "x"], [1], [1, math.nan]]}],
        [{"provider": "p", "operation": "op", "points": [[1, -1.0], [1, math.inf]]}],
        [{"provider": "p" * 1000, "operation": "op", "points": [[1, 1.0]]}],
    ],
)
def test_a_damaged_saved_form_restores_nothing_bad(rows: object) -> None:
    history = LatencyHistory()
    history.load(rows)
    prediction = history.predict("p", "op", 100)
    assert prediction.points == 0 and math.isfinite(prediction.estimated_s)


def test_a_saved_form_is_bounded_like_the_history() -> None:
    rows = [
        {"provider": f"p{i}", "operation": "op", "points": [[10, 1.0]] * (POINTS * 3)}
        for i in range(MAX_KEYS + 10)
    ]
    history = LatencyHistory()
    assert history.load(rows) == MAX_KEYS * POINTS
    assert history.predict("p0", "op", 10).points == POINTS


def test_performance_summary_has_average_p75_and_p90() -> None:
    stats = CallStats()
    for ms in range(1, 101):
        stats.record("p", "op", ok=True, retries=0, latency_s=ms / 1000)
    [row] = stats.snapshot()
    latency = row["latencyMs"]
    assert list(latency) == ["average", "p50", "p75", "p90", "p95", "p99"]
    assert latency["average"] == pytest.approx(50.5)
    for name, expected in (("p50", 50), ("p75", 75), ("p90", 90), ("p95", 95), ("p99", 99)):
        assert latency[name] == pytest.approx(expected, abs=1)  # nearest rank
