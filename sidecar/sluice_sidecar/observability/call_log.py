"""One "completed" log line per call, with the reference's telemetry fields.

Logged by the proxy when a call is finished (a stream when its last chunk was relayed), on the
``sluice.calls`` logger at INFO. The text reads like the reference's::

    LLM Operation: OpenAI ScriptGeneration completed in 15234ms (status 200, tokens: 500 in,
    120 out, retries: 0, cache: miss, cost: $0.00123, session: run-7)

and the same fields ride on the record as ``record.call`` (a dict), which the JSON log format
writes as keys of its object. When the sidecar's own handler is the only one the line would
reach, it is written without a ``LogRecord`` (``logs.sole_handler``): the same line for about
half the CPU (text; two thirds in JSON, whose ``json.dumps`` stays). Only what the sidecar
measured is logged: names, counts, times, money. Never a key, a header value other than the
caller's session id, or any prompt or answer text. Unknown values are ``null`` (JSON) or ``-``
(text).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sluice_sidecar.observability.logs import JsonFormatter, sole_handler

logger = logging.getLogger("sluice.calls")


@dataclass(slots=True)  # not frozen: one per call, and a frozen __init__ costs 5x
class Completed:
    provider: str  # its display name in the text; "none" when no provider was reached
    display_name: str
    operation: str
    model: str
    status: int
    latency_ms: int
    input_tokens: int | None
    output_tokens: int | None
    retries: int
    attempts: int
    cache: str  # hit, miss, bypass, off
    cost_usd: Decimal | None
    session: str | None
    stream: bool

    def fields(self) -> dict[str, Any]:
        return {
            "event": "llm_call_completed",
            "provider": self.provider,
            "operation": self.operation,
            "model": self.model,
            "status": self.status,
            "latency_ms": self.latency_ms,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "retries": self.retries,
            "attempts": self.attempts,
            "cache_hit": self.cache == "hit",
            "cache": self.cache,
            "cost_usd": None if self.cost_usd is None else str(self.cost_usd),
            "session": self.session,
            "stream": self.stream,
            "success": self.status < 400,
        }


def enabled() -> bool:
    """Whether the line is written at all; when not, the caller builds nothing for it."""
    return logger.isEnabledFor(logging.INFO)


def log_completed(done: Completed) -> None:
    if not enabled():
        return
    outcome = "completed" if done.status < 400 else "failed"
    cost = "-" if done.cost_usd is None else f"${done.cost_usd}"
    message = (
        f"LLM Operation: {done.display_name} {done.operation} {outcome} in {done.latency_ms}ms"
        f" (status {done.status}, tokens: {_or_dash(done.input_tokens)} in,"
        f" {_or_dash(done.output_tokens)} out, retries: {done.retries}, cache: {done.cache},"
        f" cost: {cost}, session: {done.session or '-'})"
    )
    handler = sole_handler(logger, logging.INFO)
    if handler is None:  # other handlers or filters: the ordinary way, the same line
        logger.info("%s", message, extra={"call": done.fields()})
        return
    formatter = handler.line_formatter
    # The text line has no use for the fields: only the JSON one writes them.
    fields = done.fields() if isinstance(formatter, JsonFormatter) else {}
    handler.write(formatter.line(time.time(), "INFO", logger.name, message, fields))


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)
