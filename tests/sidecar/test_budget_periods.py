"""Budget periods on the UTC calendar."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from sluice_sidecar.contract.periods import period_of

UTC = dt.UTC


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def test_calendar_periods() -> None:
    now = at(2026, 12, 31, 23, 59)
    assert period_of("daily", now).resets_at == at(2027, 1, 1)
    assert period_of("monthly", now).key == "m:2026-12"
    assert period_of("monthly", now).resets_at == at(2027, 1, 1)
    weekly = period_of("weekly", at(2026, 11, 22, 12))  # a Sunday
    assert weekly.start == at(2026, 11, 16) and weekly.resets_at == at(2026, 11, 23)
    assert period_of("total", now).resets_at is None


def test_other_time_zones_are_converted_to_utc() -> None:
    tz = dt.timezone(dt.timedelta(hours=-5))
    late_evening = dt.datetime(2026, 3, 31, 22, 0, tzinfo=tz)  # 03:00 UTC on April 1st
    assert period_of("monthly", late_evening).key == "m:2026-04"


@given(st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1)))
def test_every_instant_is_inside_its_period(naive: dt.datetime) -> None:
    now = naive.replace(tzinfo=UTC)
    for kind in ("daily", "weekly", "monthly"):
        period = period_of(kind, now)
        assert period.resets_at is not None
        assert period.start <= now < period.resets_at
        assert period_of(kind, period.resets_at).key != period.key
        assert period_of(kind, period.start).key == period.key
