"""How long a provider asks us to wait, from its response headers.

Understands ``Retry-After`` (seconds or an HTTP date), ``retry-after-ms``, OpenAI's
``x-ratelimit-reset-requests`` / ``-tokens`` durations ("1s", "6m0s", "250ms") and Anthropic's
``anthropic-ratelimit-*-reset`` RFC 3339 timestamps. An explicit ``Retry-After`` is the
provider's answer and wins. Otherwise the reset of an exhausted limit (its ``remaining`` header
is 0) counts; without that hint, the earliest reset does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_OPENAI_RESETS = ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
_ANTHROPIC_RESETS = (
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-reset",
)


def parse_go_duration(value: str) -> float | None:
    value = value.strip()
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _parse_retry_after(value: str, now: datetime) -> float | None:
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def _parse_timestamp(value: str, now: datetime) -> float | None:
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def requested_wait_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds the provider asks us to wait, or None when it says nothing usable."""
    now = now or datetime.now(UTC)
    if (value := headers.get("retry-after-ms")) is not None:
        try:
            return max(float(value) / 1000, 0.0)
        except ValueError:
            pass
    if (value := headers.get("retry-after")) is not None and (
        wait := _parse_retry_after(value, now)
    ) is not None:
        return wait
    exhausted: list[float] = []
    others: list[float] = []
    for name in (*_OPENAI_RESETS, *_ANTHROPIC_RESETS):
        value = headers.get(name)
        if value is None:
            continue
        wait = parse_go_duration(value) if name in _OPENAI_RESETS else _parse_timestamp(value, now)
        if wait is None:
            continue
        remaining = headers.get(name.replace("-reset", "-remaining"))
        (exhausted if remaining is not None and remaining.strip() == "0" else others).append(wait)
    if exhausted:
        return max(exhausted)
    return min(others) if others else None
