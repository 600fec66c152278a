"""Latency prediction: scaling by prompt tokens, ranges, confidence bands and messages."""

from __future__ import annotations

import random

import pytest

from sluice_sidecar.economics.latency_model import (
    MAX_PREDICTED,
    POINTS,
    LatencyHistory,
    confidence,
)


def test_duration_scales_with_prompt_tokens() -> None:
    history = LatencyHistory()
    for _ in range(20):
        history.record("openai", "Scripting", 500, 15.0)
    prediction = history.predict("openai", "Scripting", 1000)
    assert prediction.estimated_s == pytest.approx(30.0)
    assert prediction.message == "usually takes 30-30 seconds"


@pytest.mark.parametrize(
    ("points", "low", "high", "words"),
    [
        (1, 0.3, 0.6, "(limited historical data)"),
        (9, 0.3, 0.6, "(limited historical data)"),
        (10, 0.6, 0.8, "usually takes"),
        (49, 0.6, 0.8, "usually takes"),
        (50, 0.8, 1.0, "typically takes"),
        (100, 0.8, 1.0, "typically takes"),
    ],
)
def test_confidence_bands(points: int, low: float, high: float, words: str) -> None:
    history = LatencyHistory()
    for i in range(points):
        history.record("p", "op", 100, 1.0 + i % 5 / 10)
    prediction = history.predict("p", "op", 100)
    assert low <= prediction.confidence <= high
    assert words in prediction.message
    assert prediction.low_s <= prediction.estimated_s <= prediction.high_s


def test_without_history_a_prior_is_used() -> None:
    prediction = LatencyHistory().predict("p", "op", 500)
    assert prediction.points == 0 and prediction.confidence == 0.3
    assert prediction.estimated_s == pytest.approx(15.0)
    assert "no historical data" in prediction.message


def test_history_keeps_the_last_points_only() -> None:
    history = LatencyHistory()
    for _ in range(POINTS):
        history.record("p", "op", 10, 100.0)
    for _ in range(POINTS):
        history.record("p", "op", 10, 1.0)
    assert history.predict("p", "op", 10).estimated_s == pytest.approx(1.0)
    assert confidence(10_000) == 1.0


@pytest.mark.parametrize("tokens", [10**400, 2**1024, -(10**400)], ids=["1e400", "2^1024", "-"])
def test_any_prompt_size_predicts_finite_durations(tokens: int) -> None:
    history = LatencyHistory()
    body = history.predict("p", "op", tokens).as_json()  # from the prior
    assert all(isinstance(v, int) for v in (body["estimatedMs"], *body["rangeMs"]))
    history.record("p", "op", tokens, 1.0)
    history.record("p", "op", 500, 15.0)
    prediction = history.predict("p", "op", tokens)
    assert prediction.high_s < float("inf")
    assert prediction.as_json()["points"] == 2


def test_a_remembered_prediction_gives_way_to_the_next_record() -> None:
    history = LatencyHistory()
    for _ in range(3):  # asked again and again (a cache hit's header), nothing recorded
        assert history.predict("p", "op", 100).points == 0
    history.record("p", "op", 100, 2.0)
    after = history.predict("p", "op", 100)
    assert after.points == 1 and after.estimated_s == pytest.approx(2.0)
    history.record("q", "op", 100, 9.0)  # another key's record leaves this one's alone
    assert history.predict("p", "op", 100) is after
    history.record("p", "op", 100, 4.0)
    assert history.predict("p", "op", 100).points == 2


def test_predictions_remembered_are_bounded() -> None:
    history = LatencyHistory()
    for tokens in range(1, MAX_PREDICTED + 100):
        history.predict("p", "op", tokens)
    assert sum(map(len, history._predicted.values())) == MAX_PREDICTED
    history.record("p", "op", 10, 1.0)  # drops the key's: room again
    assert history.predict("p", "op", 10).points == 1


def test_the_rates_kept_sorted_are_those_of_the_points_kept() -> None:
    chooser = random.Random(7)
    history, fresh = LatencyHistory(), None
    for step in range(3 * POINTS):
        tokens = chooser.choice([1, 10, 500, chooser.randint(1, 10**6)])
        seconds = chooser.choice([0.0, 1.0, chooser.random() * 30])  # ties and zeros too
        history.record("p", "op", tokens, seconds)
        if step % 7 == 0:  # predictions in between: the rates exist and are kept in step
            fresh = LatencyHistory()
            fresh.load(history.dump())  # the same points, sorted from scratch
            for size in (1, 500, 10**5):
                assert history.predict("p", "op", size) == fresh.predict("p", "op", size)
    assert fresh is not None
