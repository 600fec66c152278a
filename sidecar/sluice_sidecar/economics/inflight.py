"""The calls in flight right now, as ``GET /admin/inflight`` lists them.

The latency stage opens an entry when a call enters the pipeline (with its prediction) and
closes it when the answer is finished, streams included. An entry holds the live ``Call``, so a
listing shows where the call is now: the provider it is at, its attempts so far. Bounded by the
connections the sidecar accepts (one entry per call being served); past ``MAX_LISTED`` a
listing is cut, the count stays exact.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Protocol

MAX_LISTED = 1000


class TimedCall(Protocol):
    """What a listing reads of a call (``pipeline.call.Call`` has it)."""

    @property
    def operation_name(self) -> str: ...
    @property
    def provider_name(self) -> str: ...
    @property
    def model_name(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def started(self) -> float: ...
    @property
    def timeout_s(self) -> float: ...
    @property
    def warn_after_s(self) -> float: ...
    @property
    def stream(self) -> bool: ...


@dataclass(slots=True)
class _Entry:
    call: TimedCall
    estimate_s: float | None


def warning_state(elapsed_s: float, warn_after_s: float) -> str:
    """``slow`` once a call passed its warning point (the operation's ``warningThreshold`` of
    its timeout, 50 % by default), ``ok`` before: the reference's ``IsWarning``."""
    return "slow" if elapsed_s >= warn_after_s else "ok"


class InFlightCalls:
    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}
        self._ids = itertools.count(1)

    def open(self, call: TimedCall, estimate_s: float | None) -> int:
        token = next(self._ids)
        self._entries[token] = _Entry(call, estimate_s)
        return token

    def close(self, token: int) -> None:
        self._entries.pop(token, None)

    def __len__(self) -> int:
        return len(self._entries)

    def snapshot(self, now: float) -> dict[str, Any]:
        """Oldest first; times in milliseconds of the event loop's clock."""
        rows = []
        for token, entry in itertools.islice(self._entries.items(), MAX_LISTED):
            call = entry.call
            elapsed = max(now - call.started, 0.0)
            estimate = entry.estimate_s
            rows.append(
                {
                    "id": token,
                    "operation": call.operation_name,
                    "provider": call.provider_name,
                    "model": call.model_name,
                    "stream": call.stream,
                    "attempts": call.attempts,
                    "elapsedMs": round(elapsed * 1000),
                    "estimatedMs": None if estimate is None else round(estimate * 1000),
                    "timeoutMs": round(call.timeout_s * 1000),
                    "warning": warning_state(elapsed, call.warn_after_s),
                }
            )
        return {"count": len(self._entries), "calls": rows}
