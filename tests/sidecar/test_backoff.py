"""Retry schedules (unit)."""

from __future__ import annotations

import math
import random

import pytest

from sluice_sidecar.contract.model import RetrySpec
from sluice_sidecar.resilience.backoff import nominal_delay_ms, retry_delay_ms


def spec(**kwargs: object) -> RetrySpec:
    return RetrySpec.model_validate({"baseDelayMs": 1000, "maxDelayMs": 60_000, **kwargs})


def test_exponential_with_jitter_waits_1_2_then_2_4_then_4_8_seconds() -> None:
    rng = random.Random(1)
    exponential = spec(strategy="exponential")
    for retry, (low, high) in enumerate([(1000, 2000), (2000, 4000), (4000, 8000)], start=1):
        delays = [retry_delay_ms(exponential, retry, uniform=rng.uniform) for _ in range(200)]
        assert low <= min(delays) and max(delays) <= high
        assert max(delays) - min(delays) > (high - low) / 2  # really spread, not constant


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("fixed", [1000, 1000, 1000, 1000, 1000]),
        ("linear", [1000, 2000, 3000, 4000, 5000]),
        ("fibonacci", [1000, 1000, 2000, 3000, 5000]),
        ("exponential", [1000, 2000, 4000, 8000, 16000]),
    ],
)
def test_nominal_schedules(strategy: str, expected: list[int]) -> None:
    assert [nominal_delay_ms(spec(strategy=strategy), n) for n in range(1, 6)] == expected


def test_adaptive_backs_off_harder_as_failure_rate_rises() -> None:
    adaptive = spec(strategy="adaptive")
    healthy, degraded, down = (nominal_delay_ms(adaptive, 2, rate) for rate in (0.0, 0.5, 1.0))
    assert healthy == 2000 and healthy < degraded < down == 10_000


def test_delays_are_capped() -> None:
    capped = spec(strategy="exponential", maxDelayMs=5000, jitter=False)
    assert retry_delay_ms(capped, 10) == 5000


def test_invalid_retry_spec_is_rejected() -> None:
    with pytest.raises(ValueError, match="maxDelayMs must be >= baseDelayMs"):
        spec(baseDelayMs=5000, maxDelayMs=100)


@pytest.mark.parametrize("rate", [math.nan, math.inf, -math.inf, -1.0, 7.0])
def test_adaptive_delay_is_finite_whatever_the_failure_rate(rate: float) -> None:
    adaptive = spec(strategy="adaptive", jitter=False)
    delay = retry_delay_ms(adaptive, 2, failure_rate=rate)
    assert math.isfinite(delay) and 2000 <= delay <= 10_000
