"""Kubernetes Events that repeat, folded into one Event object each, with a bounded write rate.

The circuit watch (``circuit_events``) reports each breaker state change as an ``Occurrence``.
Occurrences with the same ``key`` (same object, provider, pod, from -> to) are one series: the
first creates a core/v1 Event with a name derived from the key, later ones raise its ``count``
and ``lastTimestamp`` (what ``kubectl describe`` shows as "x5 over 3m"), as the kubelet's own
event recorder does. Writes are bounded per involved object: at most
``writes_per_minute`` creates or patches a minute, so a flapping circuit cannot flood the API
server; what is over the bound waits in the series' ``pending`` count and is written, whole,
when the object's minute allows. Counts are never dropped, only late, while this process
runs: pending counts are kept in memory only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from kubernetes_asyncio.client.exceptions import ApiException

from sluice_operator.kube import Body, Kube

logger = logging.getLogger("sluice.operator.events")
COMPONENT = "sluice-operator"
MAX_MESSAGE_CHARS = 1024  # what kopf and the kubelet keep an Event message to
WRITES_PER_MINUTE = 12  # per involved object: one change every 5 s, on average, gets through
IDLE_SERIES_S = 3600  # the API server's default Event TTL: an older series starts again
MAX_SERIES = 4096

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Occurrence:
    target: Body  # the object the Event is about: its apiVersion, kind and metadata
    type: EventType
    reason: str
    message: str
    key: str  # occurrences with one key are one Event with a count
    at: dt.datetime


@dataclass
class _Series:
    name: str
    occurrence: Occurrence  # the latest one: its message, type and time are written
    first: dt.datetime
    written: int = 0  # the count the Event object holds, when it exists
    pending: int = 0  # occurrences not written yet
    exists: bool = False
    last_write: float = field(default=0.0)


def event_name(target: Body, key: str) -> str:
    """A valid Event name, the same for every occurrence of one key (and per process)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    base = re.sub(r"[^a-z0-9.-]", "-", str(target["metadata"]["name"]).lower())[:200]
    return f"{base}.{digest}"


def _reference(target: Body) -> Body:
    meta = target["metadata"]
    return {
        "apiVersion": target["apiVersion"],
        "kind": target["kind"],
        "name": meta["name"],
        "namespace": meta["namespace"],
        "uid": meta.get("uid", ""),
    }


def _time(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventSeries:
    def __init__(
        self,
        kube: Kube,
        *,
        writes_per_minute: int = WRITES_PER_MINUTE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.writes_per_minute = writes_per_minute
        self._monotonic = monotonic
        self._series: dict[tuple[str, str], _Series] = {}  # (namespace, name) -> series
        self._writes: dict[str, deque[float]] = {}  # involved object uid -> write times

    def add(self, occurrence: Occurrence) -> None:
        namespace = occurrence.target["metadata"]["namespace"]
        where = (namespace, event_name(occurrence.target, occurrence.key))
        series = self._series.get(where)
        if series is None:
            series = self._series[where] = _Series(where[1], occurrence, occurrence.at)
        series.occurrence = occurrence
        series.pending += 1

    def pending(self) -> int:
        return sum(s.pending for s in self._series.values())

    async def flush(self) -> None:
        """Write every pending series the bound allows now, oldest first."""
        waiting = sorted(
            (item for item in self._series.items() if item[1].pending),
            key=lambda item: item[1].occurrence.at,
        )
        for (namespace, _), series in waiting:
            if not self._may_write(series.occurrence.target):
                continue
            try:
                await self._write(namespace, series)
            except ApiException as error:
                logger.warning("Event %s/%s not written: %s", namespace, series.name, error)
        self._forget_idle()

    def _may_write(self, target: Body) -> bool:
        now = self._monotonic()
        uid = target["metadata"].get("uid") or target["metadata"]["name"]
        writes = self._writes.setdefault(uid, deque())
        while writes and writes[0] <= now - 60:
            writes.popleft()
        if len(writes) >= self.writes_per_minute:
            return False
        writes.append(now)
        return True

    async def _write(self, namespace: str, series: _Series) -> None:
        occurrence = series.occurrence
        count = series.written + series.pending
        changes = {
            "count": count,
            "lastTimestamp": _time(occurrence.at),
            "message": occurrence.message[:MAX_MESSAGE_CHARS],
            "type": occurrence.type,
        }
        if series.exists:
            status, _ = await self._patch(namespace, series.name, changes)
            if status == 404:  # expired (the Event TTL) or deleted: start it again
                series.exists, series.written, series.first = False, 0, occurrence.at
                count = changes["count"] = series.pending
        if not series.exists:
            status, _ = await self._create(namespace, series, changes)
            if status == 409:  # posted by an earlier operator process: add to its count
                status, current = await self._patch(namespace, series.name, {})
                changes["count"] = count = int(current.get("count") or 1) + series.pending
                status, _ = await self._patch(namespace, series.name, changes)
        if status >= 400:
            raise ApiException(status=status, reason=f"Event {series.name}")
        series.exists, series.written, series.pending = True, count, 0
        series.last_write = self._monotonic()

    async def _create(self, namespace: str, series: _Series, changes: Body) -> tuple[int, Body]:
        occurrence = series.occurrence
        body: Body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": series.name, "namespace": namespace},
            "involvedObject": _reference(occurrence.target),
            "reason": occurrence.reason,
            "firstTimestamp": _time(series.first),
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            **changes,
        }
        return await self.kube.create_event(namespace, body)

    async def _patch(self, namespace: str, name: str, changes: Body) -> tuple[int, Body]:
        return await self.kube.patch_event(namespace, name, changes)

    def _forget_idle(self) -> None:
        now = self._monotonic()
        idle = [
            where
            for where, s in self._series.items()
            if not s.pending and now - s.last_write > IDLE_SERIES_S
        ]
        for where in idle:
            del self._series[where]
        if len(self._series) > MAX_SERIES:  # the oldest written ones go first
            quiet = sorted(
                (w for w, s in self._series.items() if not s.pending),
                key=lambda w: self._series[w].last_write,
            )
            for where in quiet[: len(self._series) - MAX_SERIES]:
                del self._series[where]
