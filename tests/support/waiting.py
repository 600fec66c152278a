"""Await a condition that no event announces (e.g. N requests in flight at a server).

Used only where the observed object offers no event to await; the poll interval is short and
the wait is bounded, so a test neither sleeps blindly nor hangs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(condition: Callable[[], bool], *, limit_s: float = 5.0) -> None:
    async with asyncio.timeout(limit_s):
        while not condition():  # noqa: ASYNC110 - nothing to await: the state has no event
            await asyncio.sleep(0.005)
