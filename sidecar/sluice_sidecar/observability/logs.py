"""Logging set-up: plain text for people, one JSON object per line for log pipelines.

The sidecar's own handler (``LineHandler``) can also write a line that has no ``LogRecord``:
the "completed" line of every call (``call_log``) is written that way when this handler is the
only one its record would reach, skipping the record and the logging machinery's walk (about a
fifth of a cache hit's CPU before). Both ways give the same line: the formatters build it from
the same few values (``LineFormatter.line``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from sluice_sidecar.observability import otel

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
JSON_TIME = "%Y-%m-%dT%H:%M:%S%z"
TEXT_TIME = "%Y-%m-%d %H:%M:%S"  # logging.Formatter's default_time_format
MSECS = "%s,%03d"  # and its default_msec_format

Fields = dict[str, Any]


class _Seconds:
    """``time.strftime`` of local time, remembered for the last whole second asked for."""

    __slots__ = ("_format", "_second", "_text")

    def __init__(self, fmt: str) -> None:
        self._format = fmt
        self._second = -1
        self._text = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._text = time.strftime(self._format, time.localtime(second))
            self._second = second
        return self._text


class LineFormatter(logging.Formatter):
    """A formatter that can also format a line from its values alone."""

    def line(self, created: float, levelname: str, name: str, message: str, fields: Fields) -> str:
        raise NotImplementedError


class TextFormatter(LineFormatter):
    """``TEXT_FORMAT``, with the time's text made once a second."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._seconds = _Seconds(TEXT_TIME)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return MSECS % (self._seconds(record.created), record.msecs)

    def line(self, created: float, levelname: str, name: str, message: str, fields: Fields) -> str:
        msecs = int((created - int(created)) * 1000)  # as LogRecord computes it
        asctime = MSECS % (self._seconds(created), msecs)
        return f"{asctime} {levelname:<7} {name}: {message}"


class JsonFormatter(LineFormatter):
    def __init__(self) -> None:
        super().__init__()
        self._seconds = _Seconds(JSON_TIME)

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "call", None) or {}
        message = record.getMessage()
        entry = self.entry(record.created, record.levelname, record.name, message, fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)

    def line(self, created: float, levelname: str, name: str, message: str, fields: Fields) -> str:
        return json.dumps(self.entry(created, levelname, name, message, fields))

    def entry(
        self, created: float, levelname: str, name: str, message: str, fields: Fields
    ) -> dict[str, object]:
        entry: dict[str, object] = {
            "time": self._seconds(created),
            "level": levelname.lower(),
            "logger": name,
            "message": message,
        }
        # A record's structured fields (the "completed" line's telemetry) become keys of their own
        # for log pipelines to filter on; they never replace the envelope's keys.
        for key, value in fields.items():
            entry.setdefault(key, value)
        if (ids := otel.log_ids()) is not None:  # logged inside a traced call
            entry["trace_id"], entry["span_id"] = ids
        return entry


class LineHandler(logging.StreamHandler[TextIO]):
    """The sidecar's handler: a stream handler that can also write a line made without a
    record (``write``)."""

    def __init__(self, formatter: LineFormatter) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(formatter)
        self.line_formatter = formatter

    def write(self, line: str) -> None:
        """``StreamHandler.emit`` for a line already formatted."""
        assert self.lock is not None  # made by Handler.__init__
        with self.lock:
            try:
                stream = self.stream
                stream.write(line + self.terminator)
                stream.flush()
            except RecursionError:
                raise
            except Exception:
                self.handleError(logging.LogRecord("sluice", logging.ERROR, "", 0, line, (), None))


def sole_handler(logger: logging.Logger, level: int) -> LineHandler | None:
    """The handler a record of ``logger`` at ``level`` would reach when it is the sidecar's own
    and the only one, with no filter anywhere and its formatter in place; else None (then log
    the ordinary way). The walk is ``Logger.handle``'s and ``callHandlers``'."""
    if logger.disabled or logger.filters:
        return None
    found = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if level >= handler.level:
                if found is not None or type(handler) is not LineHandler or handler.filters:
                    return None
                found = handler
        current = current.parent if current.propagate else None
    if found is None or found.formatter is not found.line_formatter:
        return None
    return found


def configure_logging(level: str, fmt: str) -> None:
    handler = LineHandler(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
