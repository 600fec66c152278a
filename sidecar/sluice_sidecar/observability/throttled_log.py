"""Warnings that can repeat on every call, logged at most once per interval and key.

Used by the latency stage (anomalies per provider and operation) and the budget state writer
(records it cannot encode). The first occurrence of a key is logged at once; later ones within
``interval_s`` are counted, and the next message logged for that key says how many were left
out. Bounded: ``max_keys`` keys; past it every key shares one slot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

OVERFLOW_KEY = ("other",)


class ThrottledLog:
    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval_s: float = 60.0,
        max_keys: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._max_keys = max_keys
        self._clock = clock
        self._last: dict[Hashable, tuple[float, int]] = {}  # key -> (logged at, left out since)

    def log(self, level: int, key: Hashable, message: str, *args: Any) -> bool:
        """Log ``message % args`` unless ``key`` was logged less than an interval ago."""
        if key not in self._last and len(self._last) >= self._max_keys:
            key = OVERFLOW_KEY
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self._interval_s:
            self._last[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            message += " (%d more like it in the last %.0fs not logged)"
            args = (*args, last[1], now - last[0])
        self._last[key] = (now, 0)
        self._logger.log(level, message, *args)
        return True
