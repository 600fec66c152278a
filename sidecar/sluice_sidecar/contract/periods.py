"""UTC calendar periods of budgets: which period an instant falls in, and when it resets.

``daily`` resets at 00:00 UTC, ``weekly`` on Monday 00:00 UTC (ISO weeks), ``monthly`` on the
first of the month, ``total`` never. A period's key names it in stores (``d:2026-11-22``,
``w:2026-W47``, ``m:2026-11``, ``total``), so a new period starts from zero by itself.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

UTC = dt.UTC


@dataclass(frozen=True, slots=True)
class Period:
    key: str
    start: dt.datetime
    resets_at: dt.datetime | None  # None: never (period "total")

    def seconds_to_reset(self, now: dt.datetime) -> float | None:
        return None if self.resets_at is None else max((self.resets_at - now).total_seconds(), 0)


def period_of(kind: str, now: dt.datetime) -> Period:
    now = now.astimezone(UTC)
    day = dt.datetime(now.year, now.month, now.day, tzinfo=UTC)
    if kind == "daily":
        return Period(f"d:{day:%Y-%m-%d}", day, day + dt.timedelta(days=1))
    if kind == "weekly":
        start = day - dt.timedelta(days=day.weekday())
        year, week, _ = start.isocalendar()
        return Period(f"w:{year}-W{week:02d}", start, start + dt.timedelta(days=7))
    if kind == "monthly":
        start = day.replace(day=1)
        following = (start + dt.timedelta(days=32)).replace(day=1)
        return Period(f"m:{start:%Y-%m}", start, following)
    if kind == "total":
        return Period("total", dt.datetime(1970, 1, 1, tzinfo=UTC), None)
    raise ValueError(f"unknown budget period {kind!r}")


def previous_periods(kind: str, period: Period, count: int) -> list[Period]:
    """The ``count`` periods before ``period``, newest first; none for ``total``."""
    found: list[Period] = []
    while len(found) < count and period.resets_at is not None:
        period = period_of(kind, period.start - dt.timedelta(microseconds=1))
        found.append(period)
    return found
