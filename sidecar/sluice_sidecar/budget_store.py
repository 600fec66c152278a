"""Budget spend that survives a restart: the memory store saved to a local state file.

``StateFile`` loads ``<state dir>/budgets.json`` at start-up and writes it while the sidecar
runs: at most every ``FLUSH_INTERVAL_S`` and only when spend changed, in a worker thread (no
blocking I/O on the event loop), to a temporary file renamed over the old one (atomic: a crash
leaves the old or the new file, never half of one), and once more at shutdown. A restart loses
at most the last interval's spend. In Kubernetes the directory is a volume (``emptyDir``
survives container restarts; a PVC survives pod replacement).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

import orjson

from sluice_sidecar.budgets import MemoryBudgetStore

logger = logging.getLogger("sluice.budget")
FLUSH_INTERVAL_S = 1.0
FILE_NAME = "budgets.json"
FORMAT_VERSION = 1


class StateFile:
    def __init__(self, directory: Path, store: MemoryBudgetStore) -> None:
        self.path = directory / FILE_NAME
        self.store = store
        self._task: asyncio.Task[None] | None = None

    def load(self) -> None:
        try:
            document = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, orjson.JSONDecodeError) as error:
            logger.error("cannot read budget state %s (starting from zero): %s", self.path, error)
            return
        if document.get("version") == FORMAT_VERSION:
            self.store.load(document.get("periods") or {})
            logger.info("budget spend restored from %s", self.path)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sluice-budget-state")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def flush(self) -> None:
        if not self.store.dirty:
            return
        self.store.dirty = False
        payload = orjson.dumps({"version": FORMAT_VERSION, "periods": self.store.dump()})
        try:
            await asyncio.to_thread(_write_atomically, self.path, payload)
        except OSError as error:
            self.store.dirty = True
            logger.error("cannot write budget state %s: %s", self.path, error)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await self.flush()


def _write_atomically(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
