"""Latency prediction per provider and operation, from the last calls, scaled by prompt size.

``LatencyHistory`` keeps the last ``POINTS`` successful calls per (provider, operation): their
prompt tokens and duration. A prediction scales the seconds-per-prompt-token of those calls
(500 tokens in 15 s implies 1000 tokens in about 30 s): the median gives the estimate, the
20th and 80th percentiles the range. Confidence grows with the history: under 10 points
0.3-0.6 ("estimated X-Y seconds (limited historical data)"), 10 to 49 points 0.6-0.8
("usually takes X-Y seconds"), 50 and more 0.8-1.0 ("typically takes X-Y seconds"). Without any
history a prior of ``PRIOR_S_PER_TOKEN`` stands in, at confidence 0.3.

Bounded: ``POINTS`` per key, ``MAX_KEYS`` keys (provider x operation come from the
configuration). Used by the latency stage and ``GET /admin/estimate``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from sluice_sidecar.economics.stats import percentile

POINTS = 100
MAX_KEYS = 4096
PRIOR_S_PER_TOKEN = 0.03  # 500 tokens ~ 15 s, the reference design's example
MIN_TOKENS = 1
# Prompt sizes are clamped to this before any float arithmetic: an int past ~1e308 tokens would
# overflow, and no model reads more than a few million tokens anyway.
MAX_TOKENS = 1_000_000_000


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


def clamp_tokens(prompt_tokens: int) -> int:
    """A prompt size safe for float arithmetic, whatever int a caller sent."""
    return min(max(prompt_tokens, MIN_TOKENS), MAX_TOKENS)


class LatencyHistory:
    def __init__(self) -> None:
        self._series: dict[tuple[str, str], deque[float]] = {}  # seconds per prompt token
        self._sorted: dict[tuple[str, str], list[float]] = {}  # per key, until the next record

    def record(self, provider: str, operation: str, prompt_tokens: int, duration_s: float):
        key = (provider, operation)
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= MAX_KEYS:
                return
            series = self._series[key] = deque(maxlen=POINTS)
        series.append(duration_s / clamp_tokens(prompt_tokens))
        self._sorted.pop(key, None)

    def predict(self, provider: str, operation: str, prompt_tokens: int) -> Prediction:
        key = (provider, operation)
        rates = self._sorted.get(key)
        if rates is None:
            rates = sorted(self._series.get(key, ()))
            if key in self._series:
                self._sorted[key] = rates
        tokens = clamp_tokens(prompt_tokens)
        if not rates:
            estimate = PRIOR_S_PER_TOKEN * tokens
            return Prediction(estimate, estimate / 2, estimate * 2, confidence(0), 0)
        low, mid, high = (percentile(rates, q) * tokens for q in (0.2, 0.5, 0.8))
        if len(rates) < 10:  # few points: widen the range
            low, high = min(low, mid * 0.75), max(high, mid * 1.5)
        return Prediction(mid, low, high, confidence(len(rates)), len(rates))
