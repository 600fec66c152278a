"""The "completed" line written without a LogRecord is the line the logging machinery writes."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from collections.abc import Iterator
from decimal import Decimal

import pytest

from sluice_sidecar.observability.call_log import Completed, log_completed, logger
from sluice_sidecar.observability.logs import (
    TEXT_FORMAT,
    JsonFormatter,
    LineFormatter,
    LineHandler,
    TextFormatter,
    sole_handler,
)

DONE = Completed(
    provider="openai",
    display_name="OpenAI",
    operation="ScriptGeneration",
    model="gpt-4o-mini",
    status=200,
    latency_ms=15234,
    input_tokens=500,
    output_tokens=None,
    retries=1,
    attempts=2,
    cache="hit",
    cost_usd=Decimal("0.00123"),
    session="run-7",
    stream=False,
)
TEXT_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


def handler(formatter: LineFormatter) -> tuple[LineHandler, io.StringIO]:
    written = io.StringIO()
    made = LineHandler(formatter)
    made.setStream(written)
    return made, written


@contextlib.contextmanager
def only_these_handlers() -> Iterator[list[logging.Handler]]:
    """The root logger's handlers, emptied for a test's body (pytest's own put back after:
    pytest adds them around the body, after fixtures ran)."""
    root = logging.getLogger()
    kept, level = root.handlers[:], logger.level
    root.handlers[:] = []
    logger.setLevel(logging.INFO)
    try:
        yield root.handlers
    finally:
        root.handlers[:] = kept
        logger.setLevel(level)


@pytest.mark.parametrize("formatter", [TextFormatter, JsonFormatter])
def test_the_line_without_a_record_is_the_line_with_one(
    formatter: type[LineFormatter],
) -> None:
    with only_these_handlers() as root_handlers:
        same_line_both_ways(formatter, root_handlers)


def same_line_both_ways(formatter: type[LineFormatter], root_handlers: list[logging.Handler]):
    alone, written_alone = handler(formatter())
    root_handlers.append(alone)
    assert sole_handler(logger, logging.INFO) is alone
    log_completed(DONE)
    beside, written_beside = handler(formatter())
    root_handlers.append(beside)
    assert sole_handler(logger, logging.INFO) is None  # two handlers: the ordinary way
    log_completed(DONE)
    fast, *rest = written_alone.getvalue().splitlines()
    [ordinary] = rest
    assert written_beside.getvalue().splitlines() == [ordinary]
    if formatter is TextFormatter:
        assert TEXT_TIME.match(fast) and TEXT_TIME.match(ordinary)
        assert (
            TEXT_TIME.sub("", fast)
            == TEXT_TIME.sub("", ordinary)
            == (
                "INFO    sluice.calls: LLM Operation: OpenAI ScriptGeneration completed in 15234ms"
                " (status 200, tokens: 500 in, - out, retries: 1, cache: hit, cost: $0.00123,"
                " session: run-7)"
            )
        )
    else:
        fast_entry, ordinary_entry = json.loads(fast), json.loads(ordinary)
        assert fast_entry.pop("time")[:10] == ordinary_entry.pop("time")[:10]
        assert fast_entry == ordinary_entry
        assert fast_entry["level"] == "info" and fast_entry["logger"] == "sluice.calls"
        assert fast_entry["cost_usd"] == "0.00123" and fast_entry["cache_hit"] is True


@pytest.mark.parametrize("formatter", [TextFormatter, JsonFormatter])
def test_the_formatters_make_the_same_line_from_a_record_and_from_its_values(
    formatter: type[LineFormatter],
) -> None:
    made = formatter()
    record = logging.LogRecord("sluice.calls", logging.INFO, __file__, 1, "a %s", ("b",), None)
    record.call = DONE.fields()
    fields = DONE.fields() if formatter is JsonFormatter else {}
    assert made.format(record) == made.line(record.created, "INFO", "sluice.calls", "a b", fields)
    # The time's text is remembered a second at a time: a record of another second is its own.
    record.created += 1.0
    assert made.format(record) == made.line(record.created, "INFO", "sluice.calls", "a b", fields)


def test_the_text_format_is_the_plain_formatters_own() -> None:
    record = logging.LogRecord("sluice.calls", logging.INFO, __file__, 1, "a %s", ("b",), None)
    assert TextFormatter().format(record) == logging.Formatter(TEXT_FORMAT).format(record)


def test_a_filter_or_a_foreign_handler_gets_the_ordinary_way() -> None:
    with only_these_handlers() as root_handlers:
        steps_aside(root_handlers)


def steps_aside(root_handlers: list[logging.Handler]) -> None:
    alone, written = handler(TextFormatter())
    root_handlers.append(alone)
    alone.addFilter(lambda record: False)  # e.g. a deployment's own filter: it must still apply
    assert sole_handler(logger, logging.INFO) is None
    log_completed(DONE)
    assert written.getvalue() == ""
    alone.filters.clear()
    root_handlers[:] = [logging.StreamHandler(io.StringIO())]
    assert sole_handler(logger, logging.INFO) is None
    logger.disabled = True
    try:
        root_handlers[:] = [alone]
        assert sole_handler(logger, logging.INFO) is None
    finally:
        logger.disabled = False
    assert sole_handler(logger, logging.INFO) is alone
