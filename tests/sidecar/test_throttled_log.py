"""Repeated warnings: once per interval and key, with the count of those left out."""

from __future__ import annotations

import logging

import pytest

from sluice_sidecar.observability.throttled_log import ThrottledLog
from tests.support.sidecar import VirtualClock


def test_repeats_within_the_interval_are_counted_not_logged(caplog) -> None:
    clock = VirtualClock()
    log = ThrottledLog(logging.getLogger("test.throttled"), interval_s=60, clock=clock)
    with caplog.at_level(logging.WARNING, "test.throttled"):
        assert log.log(logging.WARNING, "a", "slow %s", "one")
        for _ in range(5):
            clock.advance(1)
            assert not log.log(logging.WARNING, "a", "slow %s", "again")
        assert log.log(logging.WARNING, "b", "other key %s", "b")  # keys are independent
        clock.advance(60)
        assert log.log(logging.WARNING, "a", "slow %s", "later")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "slow one",
        "other key b",
        "slow later (5 more like it in the last 65s not logged)",
    ]


def test_keys_past_the_bound_share_one_slot(caplog) -> None:
    log = ThrottledLog(logging.getLogger("test.throttled"), max_keys=2, clock=VirtualClock())
    with caplog.at_level(logging.WARNING, "test.throttled"):
        logged = [log.log(logging.WARNING, key, "k") for key in range(100)]
    assert logged[:3] == [True, True, True] and not any(logged[3:])


@pytest.mark.parametrize("level", [logging.ERROR, logging.WARNING])
def test_the_level_is_kept(caplog, level: int) -> None:
    log = ThrottledLog(logging.getLogger("test.throttled"), clock=VirtualClock())
    with caplog.at_level(logging.DEBUG, "test.throttled"):
        log.log(level, "k", "m")
    assert caplog.records[0].levelno == level
