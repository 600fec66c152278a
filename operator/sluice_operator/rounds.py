"""Timer rounds per namespace: kopf runs a timer per resource, the work is per namespace.

The budget aggregator and the circuit watch each poll every sidecar of a namespace once per
interval, however many budgets' or policies' timers ask; a round that another timer started
is not run again, and two rounds of one namespace never overlap.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class NamespaceRounds:
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._last: dict[str, float] = {}

    def lock(self, namespace: str) -> asyncio.Lock:
        """Held during a round; other writers of the namespace's state take it too."""
        return self._locks[namespace]

    @asynccontextmanager
    async def round(self, namespace: str) -> AsyncIterator[bool]:
        """Yields whether this caller runs the round (False: one ran within half an interval)."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._last.get(namespace, -1e9) < self.interval_s / 2:
            yield False
            return
        async with self._locks[namespace]:
            self._last[namespace] = loop.time()
            yield True
