"""Reading how long a provider asks us to wait (unit)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sluice_sidecar.resilience.ratelimit_headers import (
    MAX_WAIT_S,
    parse_go_duration,
    requested_wait_seconds,
    sanitise_wait_headers,
)

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


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e400", "-1", "-0.5", "garbage"])
@pytest.mark.parametrize("header", ["retry-after", "retry-after-ms"])
def test_numbers_that_are_no_wait_are_ignored(header: str, value: str) -> None:
    assert requested_wait_seconds({header: value}, NOW) is None


def test_a_reset_duration_overflowing_to_infinity_is_ignored() -> None:
    assert requested_wait_seconds({"x-ratelimit-reset-tokens": "9" * 400 + "s"}, NOW) is None


def test_an_unusable_retry_after_ms_leaves_retry_after_to_answer() -> None:
    assert requested_wait_seconds({"retry-after-ms": "nan", "retry-after": "3"}, NOW) == 3


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "1e300"},
        {"retry-after": "86400"},
        {"retry-after-ms": "1e12"},
        {"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"},
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "99999999h"},
        {
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "9999-12-31T23:59:59Z",
        },
    ],
)
def test_long_waits_are_clamped_to_the_maximum(headers: dict[str, str]) -> None:
    assert requested_wait_seconds(headers, NOW) == MAX_WAIT_S


def test_a_reset_already_past_means_no_wait() -> None:
    earlier = (NOW - timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert requested_wait_seconds({"retry-after": earlier}, NOW) == 0


@pytest.mark.parametrize(
    ("headers", "relayed"),
    [
        ({"retry-after": "nan", "retry-after-ms": "inf"}, {}),
        ({"retry-after": "-1", "x-other": "1"}, {"x-other": "1"}),
        ({"retry-after": "1e400"}, {}),
        ({"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"}, {"retry-after": "60"}),
        ({"retry-after-ms": "1e12"}, {"retry-after-ms": "60000"}),
        (
            {"retry-after": "7", "retry-after-ms": "6500"},
            {"retry-after": "7", "retry-after-ms": "6500"},
        ),
    ],
)
def test_relayed_wait_headers_are_made_safe(
    headers: dict[str, str], relayed: dict[str, str]
) -> None:
    sanitise_wait_headers(headers, NOW)
    assert headers == relayed
