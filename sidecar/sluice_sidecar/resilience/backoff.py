"""Retry delay schedules: pure functions of the attempt number (and, for adaptive, failure rate).

With the defaults (base 1 s, jitter on) exponential waits about 1-2 s, 2-4 s, 4-8 s: the nominal
delay is ``base * 2**(n-1)`` and jitter draws uniformly from [nominal, 2 * nominal], so
synchronized clients spread out. Every schedule is capped at ``maxDelayMs``, and the result is
always a finite number (a failure rate that is not a number counts as 0): a timer given NaN
breaks the event loop.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from functools import cache

from sluice_sidecar.contract.model import RetrySpec


@cache
def _fibonacci(n: int) -> int:
    return n if n < 2 else _fibonacci(n - 1) + _fibonacci(n - 2)


def nominal_delay_ms(spec: RetrySpec, retry_number: int, failure_rate: float = 0.0) -> float:
    """Delay before retry ``retry_number`` (1 for the first retry), before jitter and cap."""
    base = spec.base_delay_ms
    match spec.strategy:
        case "fixed":
            return float(base)
        case "linear":
            return float(base * retry_number)
        case "fibonacci":
            return float(base * _fibonacci(retry_number))
        case "exponential":
            return float(base * 2 ** (retry_number - 1))
        case "adaptive":
            # Back off harder as the provider fails more: at a 100 % failure rate the
            # exponential delay is multiplied by five.
            rate = min(max(failure_rate, 0.0), 1.0) if math.isfinite(failure_rate) else 0.0
            return base * 2 ** (retry_number - 1) * (1 + 4 * rate)
    raise ValueError(f"unknown retry strategy {spec.strategy!r}")


def retry_delay_ms(
    spec: RetrySpec,
    retry_number: int,
    failure_rate: float = 0.0,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    delay = nominal_delay_ms(spec, retry_number, failure_rate)
    if spec.jitter and delay > 0:
        delay = uniform(delay, 2 * delay)
    return min(delay, float(spec.max_delay_ms))
