"""What the files of the state directory share: an atomic write, and a flush on a timer.

Both the budget spend (``state_file``) and the latency history (``latency_file``) are kept in
memory and saved to ``<state dir>``: every interval when something changed, and once more at
shutdown, through a temporary file renamed over the old one (a crash leaves the old file or
the new one, never half of one).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path


def write_atomically(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a synced temporary file renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class PeriodicFlush:
    """Calls ``flush`` every ``interval_s`` while started, and once more when closed.

    ``flush`` must never raise (the owners log and count their failures): one bad write must
    not stop the writer for good."""

    def __init__(self, flush: Callable[[], Awaitable[None]], interval_s: float, name: str) -> None:
        self._flush = flush
        self._interval_s = interval_s
        self._name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self._flush()
