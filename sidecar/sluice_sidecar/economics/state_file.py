"""Budget spend that survives a restart: the memory store saved to a local state file.

``StateFile`` loads ``<state dir>/budgets.json`` at start-up and writes it while the sidecar
runs: at most every ``FLUSH_INTERVAL_S`` and only when spend changed, in a worker thread (no
blocking I/O on the event loop), to a temporary file renamed over the old one (atomic: a crash
leaves the old or the new file, never half of one), and once more at shutdown. A restart loses
at most the last interval's spend. In Kubernetes the directory is a volume (``emptyDir``
survives container restarts; a PVC survives pod replacement).

The writer outlives any one bad record: a session id that cannot be written as JSON (a lone
surrogate, from a header that was not UTF-8) is left out of the file (its spend stays in the
budget's total), and a failed write is retried at the next interval. Each failure is logged at
most once a minute (``ThrottledLog``) and counted in ``sluice_state_write_errors_total{reason}``
(``encode``, ``io``, ``internal``) when the owner passes ``on_error``.
"""

from __future__ import annotations

import asyncio
import decimal
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from sluice_sidecar.economics.budgets import MemoryBudgetStore
from sluice_sidecar.economics.saved_file import PeriodicFlush, write_atomically
from sluice_sidecar.observability.throttled_log import ThrottledLog

logger = logging.getLogger("sluice.budget")
FLUSH_INTERVAL_S = 1.0
FILE_NAME = "budgets.json"
FORMAT_VERSION = 1

ErrorCounter = Callable[[str], None]  # called with the reason: encode, io, internal


class StateFile:
    def __init__(
        self,
        directory: Path,
        store: MemoryBudgetStore,
        *,
        on_error: ErrorCounter | None = None,
        interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self.path = directory / FILE_NAME
        self.store = store
        self._on_error = on_error
        self._log = ThrottledLog(logger)
        self._writer = PeriodicFlush(self.flush, interval_s, "sluice-budget-state")

    def load(self) -> None:
        try:
            document = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, orjson.JSONDecodeError) as error:
            logger.error("cannot read budget state %s (starting from zero): %s", self.path, error)
            return
        if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
            logger.error("budget state %s is not version %d: ignored", self.path, FORMAT_VERSION)
            return
        try:
            self.store.load(document.get("periods") or {})
        except (AttributeError, TypeError, ValueError, decimal.InvalidOperation) as error:
            logger.error("budget state %s is damaged (restored in part): %r", self.path, error)
            return
        logger.info("budget spend restored from %s", self.path)

    def start(self) -> None:
        self._writer.start()

    async def close(self) -> None:
        await self._writer.close()

    async def flush(self) -> None:
        """Write the file when spend changed; never raises (failures are logged and counted)."""
        if not self.store.dirty:
            return
        self.store.dirty = False
        try:
            payload = self._encode()
            await asyncio.to_thread(write_atomically, self.path, payload)
        except OSError as error:
            self.store.dirty = True  # retried at the next interval
            self._failed("io", "cannot write budget state %s: %s", error)
        except Exception as error:  # a bug must not stop the writer for good
            self.store.dirty = True
            self._failed("internal", "budget state %s not written: %r", error)

    def _encode(self) -> bytes:
        periods = self.store.dump()
        try:
            return orjson.dumps({"version": FORMAT_VERSION, "periods": periods})
        except TypeError:
            dropped = _drop_unencodable_sessions(periods)
            self._failed("encode", "budget state %s: %s left out", f"{dropped} session id(s)")
            return orjson.dumps({"version": FORMAT_VERSION, "periods": periods})

    def _failed(self, reason: str, message: str, detail: object) -> None:
        if self._on_error is not None:
            self._on_error(reason)
        self._log.log(logging.ERROR, reason, message, self.path, detail)


def _drop_unencodable_sessions(periods: dict[str, Any]) -> int:
    """Remove session ids that are not valid UTF-8 text (lone surrogates); how many."""
    dropped = 0
    for row in periods.values():
        sessions = row.get("sessions") or {}
        for session in [s for s in sessions if not _is_utf8(s)]:
            del sessions[session]
            dropped += 1
    return dropped


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
