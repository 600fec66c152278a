"""The time a caller sees of its call: the per-request deadline and the answer's timing headers.

``X-LLM-Timeout`` (seconds, a plain decimal number) sets this call's timeout: any value up to the
operation's timeout shortens it; a longer one is accepted only up to the operation's
``maxTimeoutSeconds`` (by default the timeout itself: no extension). Anything else - not a
number, not finite, zero or less, more than ``MAX_HEADER_CHARS`` characters, past the bound - is
a 400 in the caller's format before anything else is done with the request.

Every answer carries, when its headers are sent (for a stream: at its first chunk):

- ``x-sluice-elapsed-ms``: milliseconds since the request arrived;
- ``x-sluice-warning``: ``ok``, or ``slow`` once the call passed its warning point (the
  operation's ``warningThreshold`` of its timeout, 50 % by default, as the reference warns);
- ``Server-Timing`` (W3C, shown by browsers' developer tools): ``queue`` (from arrival to the
  first attempt sent upstream: budget, queue and batching admission), ``upstream`` (the time
  spent in attempts at providers, failed ones included; for a stream, up to its first chunk),
  ``cache`` (``desc`` is hit, miss, bypass or off) and ``total``.
"""

from __future__ import annotations

import asyncio
import math
import re

from sluice_sidecar.api.heartbeat import heartbeat_line
from sluice_sidecar.economics.inflight import warning_state
from sluice_sidecar.errors import LimitExceeded
from sluice_sidecar.pipeline.call import Call

TIMEOUT_HEADER = "x-llm-timeout"
MAX_HEADER_CHARS = 32
# Digits with an optional fraction: no exponent, sign, "inf" or "nan", whatever float() accepts.
_DECIMAL = re.compile(r"^[0-9]{1,7}(\.[0-9]{1,6})?$")


def requested_timeout(value: str | None, timeout_s: float, max_timeout_s: float) -> float:
    """The call's timeout in seconds: the operation's, or what ``X-LLM-Timeout`` asks within
    the bound. Raises ``LimitExceeded`` (400, limit ``timeout``) naming the accepted range."""
    if value is None:
        return timeout_s
    text = value.strip()
    bound = max(timeout_s, max_timeout_s)
    accepted = f"a number of seconds above 0 and at most {bound:g}"
    if len(text) > MAX_HEADER_CHARS or not _DECIMAL.match(text):
        raise LimitExceeded(f"X-LLM-Timeout must be {accepted}", limit="timeout")
    seconds = float(text)
    if not math.isfinite(seconds) or seconds <= 0:
        raise LimitExceeded(f"X-LLM-Timeout must be {accepted}", limit="timeout")
    if seconds > bound:
        extension = (
            f"this operation's maxTimeoutSeconds is {bound:g}"
            if bound > timeout_s
            else "this operation's timeout cannot be extended (maxTimeoutSeconds is not set)"
        )
        raise LimitExceeded(
            f"X-LLM-Timeout {text} is longer than {bound:g} seconds: {extension}",
            limit="timeout",
        )
    return seconds


def timing_headers(
    *,
    elapsed_s: float,
    warn_after_s: float,
    queue_s: float | None,
    upstream_s: float,
    cache_status: str,
) -> dict[str, str]:
    """The timing headers of one answer (see the module docstring)."""
    parts = []
    if queue_s is not None:
        parts.append(f"queue;dur={_ms(queue_s)}")
        parts.append(f"upstream;dur={_ms(upstream_s)}")
    parts.append(f'cache;desc="{cache_status}"')
    parts.append(f"total;dur={_ms(elapsed_s)}")
    return {
        "x-sluice-elapsed-ms": str(round(elapsed_s * 1000)),
        "x-sluice-warning": warning_state(elapsed_s, warn_after_s),
        "server-timing": ", ".join(parts),
    }


def answer_timing(call: Call, now: float) -> dict[str, str]:
    """The timing headers of a call's answer, sent at ``now``."""
    first = call.first_attempt_at
    return timing_headers(
        elapsed_s=now - call.started,
        warn_after_s=call.warn_after_s,
        queue_s=None if first is None else first - call.started,
        upstream_s=call.upstream_s,
        cache_status=call.cache_status,
    )


def refused_timing(elapsed_s: float) -> dict[str, str]:
    """A request refused before it became a call: its time, and never slow."""
    return timing_headers(
        elapsed_s=elapsed_s, warn_after_s=math.inf, queue_s=None, upstream_s=0.0, cache_status="off"
    )


def heartbeat(call: Call) -> bytes:
    """The heartbeat comment of a stream call waiting for its first token, now."""
    elapsed = asyncio.get_running_loop().time() - call.started
    return heartbeat_line(elapsed, call.estimate_s, warning_state(elapsed, call.warn_after_s))


def _ms(seconds: float) -> str:
    return f"{max(seconds, 0.0) * 1000:.1f}"
