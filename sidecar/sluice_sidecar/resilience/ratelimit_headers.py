"""How long a provider asks us to wait, from its response headers.

Understands ``Retry-After`` (seconds or an HTTP date), ``retry-after-ms``, OpenAI's
``x-ratelimit-reset-requests`` / ``-tokens`` durations ("1s", "6m0s", "250ms") and Anthropic's
``anthropic-ratelimit-*-reset`` RFC 3339 timestamps. An explicit ``Retry-After`` is the
provider's answer and wins. Otherwise the reset of an exhausted limit (its ``remaining`` header
is 0) counts; without that hint, the earliest reset does.

Every number comes from the network, so every one is checked: NaN, infinities, overflowing
literals (``1e400``) and negative numbers are ignored (as if the header were absent), and a
wait is clamped to ``MAX_WAIT_S``. A wait that long already passes any sensible deadline, so
the retry stage answers the provider's error at once instead of sleeping; what it must never
see is a value an event-loop timer cannot hold.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
MAX_WAIT_S = 60.0  # the longest wait a provider can ask for; longer asks are clamped to it
_OPENAI_RESETS = ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
_ANTHROPIC_RESETS = (
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-reset",
)


def clamp_wait(seconds: float) -> float | None:
    """A usable wait: finite, not negative, at most ``MAX_WAIT_S``; None for anything else."""
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_WAIT_S)


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def parse_go_duration(value: str) -> float | None:
    value = value.strip()
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _go_wait(value: str) -> float | None:
    seconds = parse_go_duration(value)
    return None if seconds is None else clamp_wait(seconds)


def _until(when: datetime, now: datetime) -> float:
    """Seconds from ``now`` to ``when``; a time already past means no wait."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def _parse_retry_after_ms(value: str) -> float | None:
    milliseconds = _number(value.strip())
    return None if milliseconds is None else clamp_wait(milliseconds / 1000)


def _parse_retry_after(value: str, now: datetime) -> float | None:
    value = value.strip()
    if (seconds := _number(value)) is not None:
        return clamp_wait(seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return clamp_wait(_until(when, now))


def _parse_timestamp(value: str, now: datetime) -> float | None:
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return clamp_wait(_until(when, now))


def requested_wait_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds the provider asks us to wait, or None when it says nothing usable."""
    now = now or datetime.now(UTC)
    if (value := headers.get("retry-after-ms")) is not None and (
        wait := _parse_retry_after_ms(value)
    ) is not None:
        return wait
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
        wait = _go_wait(value) if name in _OPENAI_RESETS else _parse_timestamp(value, now)
        if wait is None:
            continue
        remaining = headers.get(name.replace("-reset", "-remaining"))
        (exhausted if remaining is not None and remaining.strip() == "0" else others).append(wait)
    if exhausted:
        return max(exhausted)
    return min(others) if others else None


def sanitise_wait_headers(headers: MutableMapping[str, str], now: datetime | None = None) -> None:
    """Make the ``retry-after`` headers relayed to a caller safe for its client to read.

    A usable value is kept as it came (clamped when too long, in whole seconds for
    ``retry-after``); a value that is no wait at all (NaN, infinity, negative, garbage) is
    dropped, so no client library sleeps forever or crashes on what the provider sent.
    """
    now = now or datetime.now(UTC)
    if (value := headers.get("retry-after-ms")) is not None:
        wait = _parse_retry_after_ms(value)
        if wait is None:
            del headers["retry-after-ms"]
        elif wait == MAX_WAIT_S:
            headers["retry-after-ms"] = str(round(MAX_WAIT_S * 1000))
    if (value := headers.get("retry-after")) is not None:
        wait = _parse_retry_after(value, now)
        if wait is None:
            del headers["retry-after"]
        elif wait == MAX_WAIT_S:
            headers["retry-after"] = str(round(MAX_WAIT_S))
