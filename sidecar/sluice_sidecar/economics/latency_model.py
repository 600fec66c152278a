"""Latency prediction per provider and operation, from the last calls, scaled by prompt size.

``LatencyHistory`` keeps the last ``POINTS`` successful calls per (provider, operation): their
prompt tokens and duration. A prediction scales the seconds-per-prompt-token of those calls
(500 tokens in 15 s implies 1000 tokens in about 30 s): the median gives the estimate, the
20th and 80th percentiles the range. Confidence grows with the history: under 10 points
0.3-0.6 ("estimated X-Y seconds (limited historical data)"), 10 to 49 points 0.6-0.8
("usually takes X-Y seconds"), 50 and more 0.8-1.0 ("typically takes X-Y seconds"). Without any
history a prior of ``PRIOR_S_PER_TOKEN`` stands in, at confidence 0.3. Confidence also falls
with inconsistency (the reference's "data consistency"): when the predicted 20th-80th
percentile range is wider than ``RESOLUTION_S`` and than ``STEADY_SPREAD`` of its median, the
volume's confidence is multiplied by a factor that reaches ``NOISY_FACTOR`` at a spread of
``NOISY_SPREAD`` (a history of 0.5 s and 6 s calls predicts nothing anyone can rely on).

``dump``/``load`` give the saved form (``economics.latency_file`` keeps it in the state
directory); ``load`` treats it as untrusted. ``in_flight`` lists the calls being served now.

Every call asks for a prediction (a cache hit too): the rates are kept sorted as points come
and go, and the predictions by prompt size are kept per key until its next record. Bounded:
``POINTS`` per key, ``MAX_KEYS`` keys (provider x operation come from the configuration),
``MAX_PREDICTED`` predictions in all. Used by the latency stage and ``GET /admin/estimate``.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from sluice_sidecar.economics.inflight import InFlightCalls
from sluice_sidecar.economics.stats import percentile

POINTS = 100
MAX_KEYS = 4096
MAX_PREDICTED = 4096  # predictions remembered (by key and prompt size) until their key's record
PRIOR_S_PER_TOKEN = 0.03  # 500 tokens ~ 15 s, the reference design's example
MIN_TOKENS = 1
# Prompt sizes are clamped to this before any float arithmetic: an int past ~1e308 tokens would
# overflow, and no model reads more than a few million tokens anyway.
MAX_TOKENS = 1_000_000_000
STEADY_SPREAD = 0.5  # (p80 - p20) / p50 up to which a history counts as consistent
NOISY_SPREAD = 1.5
NOISY_FACTOR = 0.5
RESOLUTION_S = 1.0  # a predicted range narrower than this is consistent
MAX_NAME_CHARS = 256  # provider and operation names in a saved form, as at the boundary


@dataclass(frozen=True, slots=True)
class Prediction:
    estimated_s: float
    low_s: float
    high_s: float
    confidence: float
    points: int

    @property
    def message(self) -> str:
        span = f"{_seconds(self.low_s)}-{_seconds(self.high_s)} seconds"
        if self.points == 0:
            return f"estimated {span} (no historical data)"
        if self.points < 10:
            return f"estimated {span} (limited historical data)"
        if self.points < 50:
            return f"usually takes {span}"
        return f"typically takes {span}"

    def as_json(self) -> dict[str, Any]:
        return {
            "estimatedMs": round(self.estimated_s * 1000),
            "rangeMs": [round(self.low_s * 1000), round(self.high_s * 1000)],
            "confidence": round(self.confidence, 3),
            "points": self.points,
            "message": self.message,
        }


def _seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def confidence(points: int) -> float:
    if points < 10:
        return 0.3 + 0.3 * points / 10
    if points < 50:
        return 0.6 + 0.2 * (points - 10) / 40
    return min(0.8 + 0.2 * (points - 50) / 50, 1.0)


def consistency(low_s: float, mid_s: float, high_s: float) -> float:
    """1.0 for a consistent history, down to ``NOISY_FACTOR`` for a noisy one, from the
    predicted 20th, 50th and 80th percentile durations. A range narrower than
    ``RESOLUTION_S`` is consistent whatever its ratio: milliseconds of jitter on a fast
    provider are no reason to distrust a prediction (the reference works in whole seconds)."""
    if high_s - low_s <= RESOLUTION_S or mid_s <= 0:
        return 1.0
    spread = (high_s - low_s) / mid_s
    if spread <= STEADY_SPREAD:
        return 1.0
    share = min((spread - STEADY_SPREAD) / (NOISY_SPREAD - STEADY_SPREAD), 1.0)
    return 1.0 - (1.0 - NOISY_FACTOR) * share


def clamp_tokens(prompt_tokens: int) -> int:
    """A prompt size safe for float arithmetic, whatever int a caller sent."""
    return min(max(prompt_tokens, MIN_TOKENS), MAX_TOKENS)


class LatencyHistory:
    def __init__(self) -> None:
        # (prompt tokens, seconds) per key; the rates are derived from them
        self._series: dict[tuple[str, str], deque[tuple[int, float]]] = {}
        self._sorted: dict[tuple[str, str], list[float]] = {}  # per key, the series' rates
        # Per key, until its next record: predictions by prompt size (sizes repeat).
        self._predicted: dict[tuple[str, str], dict[int, Prediction]] = {}
        self._predicted_count = 0
        self.dirty = False  # recorded since the last save
        self.in_flight = InFlightCalls()

    def record(self, provider: str, operation: str, prompt_tokens: int, duration_s: float):
        key = (provider, operation)
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= MAX_KEYS:
                return
            series = self._series[key] = deque(maxlen=POINTS)
        tokens = clamp_tokens(prompt_tokens)
        rates = self._sorted.get(key)
        if rates is not None:  # kept sorted in place: a sort per record cost 10 µs a call
            if len(series) == series.maxlen:
                old_tokens, old_seconds = series[0]  # the point the append will push out
                del rates[bisect.bisect_left(rates, old_seconds / old_tokens)]
            bisect.insort(rates, duration_s / tokens)
        series.append((tokens, duration_s))
        if (dropped := self._predicted.pop(key, None)) is not None:
            self._predicted_count -= len(dropped)
        self.dirty = True

    def _rates(self, key: tuple[str, str]) -> list[float]:
        rates = self._sorted.get(key)
        if rates is None:
            rates = sorted(seconds / tokens for tokens, seconds in self._series.get(key, ()))
            if key in self._series:
                self._sorted[key] = rates
        return rates

    def predict(self, provider: str, operation: str, prompt_tokens: int) -> Prediction:
        key = (provider, operation)
        tokens = clamp_tokens(prompt_tokens)
        known = self._predicted.get(key)
        if known is not None and (found := known.get(tokens)) is not None:
            return found
        found = self._predict(key, tokens)
        if self._predicted_count < MAX_PREDICTED:
            self._predicted.setdefault(key, {})[tokens] = found
            self._predicted_count += 1
        return found

    def _predict(self, key: tuple[str, str], tokens: int) -> Prediction:
        rates = self._rates(key)
        if not rates:
            estimate = PRIOR_S_PER_TOKEN * tokens
            return Prediction(estimate, estimate / 2, estimate * 2, confidence(0), 0)
        low, mid, high = (percentile(rates, q) * tokens for q in (0.2, 0.5, 0.8))
        trust = confidence(len(rates)) * consistency(low, mid, high)
        if len(rates) < 10:  # few points: widen the range
            low, high = min(low, mid * 0.75), max(high, mid * 1.5)
        return Prediction(mid, low, high, trust, len(rates))

    def quantile(
        self, provider: str, operation: str, prompt_tokens: int, fraction: float
    ) -> tuple[float, int]:
        """The ``fraction`` quantile of the duration at this prompt size, and the points."""
        rates = self._rates((provider, operation))
        return percentile(rates, fraction) * clamp_tokens(prompt_tokens), len(rates)

    def dump(self) -> list[dict[str, Any]]:
        return [
            {"provider": provider, "operation": operation, "points": [list(p) for p in series]}
            for (provider, operation), series in self._series.items()
        ]

    def load(self, rows: object) -> int:
        """Add a saved form's points (oldest first); how many were kept. Anything that is not
        a key of two short names with points of [tokens >= 1, finite seconds >= 0] is left out."""
        kept = 0
        for row in rows if isinstance(rows, list) else ():
            if not isinstance(row, dict):
                continue
            provider, operation = row.get("provider"), row.get("operation")
            points = row.get("points")
            if not (_name(provider) and _name(operation) and isinstance(points, list)):
                continue
            assert isinstance(provider, str) and isinstance(operation, str)  # _name checked
            for point in points[-POINTS:]:
                if _point(point) and self._restore(provider, operation, point):
                    kept += 1
        return kept

    def _restore(self, provider: str, operation: str, point: list[Any]) -> bool:
        before = len(self._series.get((provider, operation), ()))
        self.record(provider, operation, int(point[0]), float(point[1]))
        return len(self._series.get((provider, operation), ())) > before


def _name(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_CHARS and value.isprintable()


def _point(point: object) -> bool:
    if not isinstance(point, list) or len(point) != 2:
        return False
    tokens, seconds = point
    return (
        isinstance(tokens, int)
        and not isinstance(tokens, bool)
        and 1 <= tokens <= MAX_TOKENS
        and isinstance(seconds, int | float)
        and not isinstance(seconds, bool)
        and math.isfinite(seconds)
        and seconds >= 0
    )
