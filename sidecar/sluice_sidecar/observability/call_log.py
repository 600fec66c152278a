"""One "completed" log line per call, with the reference's telemetry fields.

Logged by the proxy when a call is finished (a stream when its last chunk was relayed), on the
``sluice.calls`` logger at INFO. The text reads like the reference's::

    LLM Operation: OpenAI ScriptGeneration completed in 15234ms (status 200, tokens: 500 in,
    120 out, retries: 0, cache: miss, cost: $0.00123, session: run-7)

and the same fields ride on the record as ``record.call`` (a dict), which the JSON log format
writes as keys of its object. Only what the sidecar measured is logged: names, counts, times,
money. Never a key, a header value other than the caller's session id, or any prompt or answer
text. Unknown values are ``null`` (JSON) or ``-`` (text).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

logger = logging.getLogger("sluice.calls")


@dataclass(frozen=True, slots=True)
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
    logger.info(
        "LLM Operation: %s %s %s in %dms (status %d, tokens: %s in, %s out, retries: %d,"
        " cache: %s, cost: %s, session: %s)",
        done.display_name,
        done.operation,
        outcome,
        done.latency_ms,
        done.status,
        _or_dash(done.input_tokens),
        _or_dash(done.output_tokens),
        done.retries,
        done.cache,
        "-" if done.cost_usd is None else f"${done.cost_usd}",
        done.session or "-",
        extra={"call": done.fields()},
    )


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)
