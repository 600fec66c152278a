"""Latency history that survives a restart: ``<state dir>/latency.json``.

Loaded once when the data app starts (in a worker thread), written every ``FLUSH_INTERVAL_S``
when calls were recorded and once more at shutdown, to a temporary file renamed over the old
one (the budget state file's writer). A restart therefore keeps its predictions, their
confidence and the adaptive attempt timeouts instead of starting from the prior. The file is
read as untrusted input: bounded in size, every value checked (``LatencyHistory.load`` keeps
finite, non-negative points only, at most ``POINTS`` per key and ``MAX_KEYS`` keys); a damaged
file is logged and ignored, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson

from sluice_sidecar.economics.latency_model import LatencyHistory
from sluice_sidecar.economics.saved_file import PeriodicFlush, write_atomically
from sluice_sidecar.observability.throttled_log import ThrottledLog

logger = logging.getLogger("sluice.latency")
FILE_NAME = "latency.json"
FORMAT_VERSION = 1
FLUSH_INTERVAL_S = 30.0
MAX_FILE_BYTES = 8 * 1024 * 1024  # 4096 keys x 100 points written as JSON stay under 8 MiB


class LatencyFile:
    def __init__(
        self, directory: Path, history: LatencyHistory, *, interval_s: float = FLUSH_INTERVAL_S
    ) -> None:
        self.path = directory / FILE_NAME
        self.history = history
        self._log = ThrottledLog(logger)
        self._writer = PeriodicFlush(self.flush, interval_s, "sluice-latency-state")

    def load(self) -> int:
        """Restore the history; how many points were restored (0 when there is no file)."""
        try:
            with self.path.open("rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return 0
        except OSError as error:
            logger.error("cannot read latency history %s: %s", self.path, error)
            return 0
        if len(raw) > MAX_FILE_BYTES:
            logger.error("latency history %s is over %d bytes: ignored", self.path, MAX_FILE_BYTES)
            return 0
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            logger.error("latency history %s is not JSON (ignored): %s", self.path, error)
            return 0
        if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
            logger.error("latency history %s is not version %d: ignored", self.path, FORMAT_VERSION)
            return 0
        restored = self.history.load(document.get("series"))
        logger.info("latency history restored from %s: %d calls", self.path, restored)
        return restored

    def start(self) -> None:
        self._writer.start()

    async def close(self) -> None:
        await self._writer.close()

    async def flush(self) -> None:
        """Write the file when calls were recorded since the last write; never raises."""
        if not self.history.dirty:
            return
        self.history.dirty = False
        try:
            payload = orjson.dumps({"version": FORMAT_VERSION, "series": self.history.dump()})
            await asyncio.to_thread(write_atomically, self.path, payload)
        except Exception as error:
            self.history.dirty = True
            self._log.log(
                logging.ERROR, "write", "latency history %s not written: %s", self.path, error
            )


def history_lifespan(
    directory: Path | None, history: LatencyHistory
) -> Callable[[object], AsyncIterator[None]]:
    """An aiohttp cleanup context: load at start, write while serving and at shutdown; nothing
    without a state directory."""

    async def lifespan(app: object) -> AsyncIterator[None]:
        if directory is None:
            yield
            return
        saved = LatencyFile(directory, history)
        await asyncio.to_thread(saved.load)
        saved.start()
        yield
        await saved.close()

    return lifespan
