"""In-memory call statistics per provider and operation, served by ``GET /admin/stats``.

Latency is summarised as the reference's performance summary: average, p50, p75, p90, p95, p99.
Bounded: latencies are kept in a ring of the last ``LATENCY_SAMPLES`` calls per key, and the
number of keys is bounded by the configured providers and operations.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

LATENCY_SAMPLES = 2048
MAX_KEYS = 4096


@dataclass(slots=True)
class _Series:
    count: int = 0
    successes: int = 0
    retries: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return 0.0
    rank = max(round(fraction * len(sorted_values) + 0.5) - 1, 0)
    return sorted_values[min(rank, len(sorted_values) - 1)]


class CallStats:
    def __init__(self) -> None:
        self._series: dict[tuple[str, str], _Series] = {}

    def record(
        self, provider: str, operation: str, *, ok: bool, retries: int, latency_s: float
    ) -> None:
        key = (provider, operation)
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= MAX_KEYS:
                return
            series = self._series[key] = _Series()
        series.count += 1
        series.successes += ok
        series.retries += retries
        series.latencies.append(latency_s)

    def snapshot(self) -> list[dict[str, object]]:
        rows = []
        for (provider, operation), s in sorted(self._series.items()):
            ordered = sorted(s.latencies)
            rows.append(
                {
                    "provider": provider,
                    "operation": operation,
                    "count": s.count,
                    "successRate": round(s.successes / s.count, 4) if s.count else 0.0,
                    "averageRetries": round(s.retries / s.count, 4) if s.count else 0.0,
                    "latencyMs": _summary(ordered),
                }
            )
        return rows


SUMMARY_PERCENTILES = (("p50", 0.50), ("p75", 0.75), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99))


def _summary(ordered: list[float]) -> dict[str, float]:
    """Average and percentiles in milliseconds: the reference's performance summary."""
    average = sum(ordered) / len(ordered) if ordered else 0.0
    summary = {"average": round(average * 1000, 2)}
    for name, fraction in SUMMARY_PERCENTILES:
        summary[name] = round(percentile(ordered, fraction) * 1000, 2)
    return summary
