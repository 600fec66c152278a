"""The operator's logging: kopf's line per successful handler only with --verbose."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from sluice_operator import logs


@pytest.fixture
def kopf_objects() -> Iterator[logging.Logger]:
    logger = logging.getLogger(logs.KOPF_OBJECTS)
    filters = list(logger.filters)
    yield logger
    logger.filters[:] = filters


def emit_handler_lines(logger: logging.Logger) -> None:
    logger.info("Handler 'pod_event' succeeded.")
    logger.info("Timer 'collect_usage' succeeded.")
    logger.info("Handler 'pod_event' is retried.")
    logger.warning("Handler 'pod_event' failed temporarily: boom")


def test_successes_are_dropped_and_the_rest_kept_by_default(
    kopf_objects: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    logs.configure(verbose=False)
    with caplog.at_level(logging.DEBUG, logger=logs.KOPF_OBJECTS):
        emit_handler_lines(kopf_objects)
    assert [r.getMessage() for r in caplog.records] == [
        "Handler 'pod_event' is retried.",
        "Handler 'pod_event' failed temporarily: boom",
    ]


def test_verbose_keeps_every_line(
    kopf_objects: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    logs.configure(verbose=True)
    with caplog.at_level(logging.DEBUG, logger=logs.KOPF_OBJECTS):
        emit_handler_lines(kopf_objects)
    assert len(caplog.records) == 4
