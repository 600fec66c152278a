"""Reading how long a provider asks us to wait (unit)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sluice_sidecar.pipeline.ratelimit_headers import parse_go_duration, requested_wait_seconds

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1s", 1), ("6m0s", 360), ("250ms", 0.25), ("1h2m3.5s", 3723.5), ("nonsense", None)],
)
def test_go_durations(value: str, seconds: float | None) -> None:
    assert parse_go_duration(value) == seconds


def test_retry_after_seconds_and_http_date() -> None:
    assert requested_wait_seconds({"retry-after": "7"}, NOW) == 7
    later = (NOW + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert requested_wait_seconds({"retry-after": later}, NOW) == pytest.approx(30)


def test_retry_after_ms_wins() -> None:
    assert requested_wait_seconds({"retry-after-ms": "1500", "retry-after": "9"}, NOW) == 1.5


def test_openai_reset_of_the_exhausted_limit() -> None:
    headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "2s",
        "x-ratelimit-remaining-tokens": "5000",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert requested_wait_seconds(headers, NOW) == 2


def test_anthropic_reset_timestamp() -> None:
    reset = (NOW + timedelta(seconds=12)).isoformat().replace("+00:00", "Z")
    headers = {
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset,
    }
    assert requested_wait_seconds(headers, NOW) == pytest.approx(12)


def test_nothing_usable() -> None:
    assert requested_wait_seconds({"retry-after": "soon"}, NOW) is None
    assert requested_wait_seconds({}, NOW) is None
