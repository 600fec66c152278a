"""Priority admission: at most ``queue.maxConcurrent`` calls in flight; the rest wait by priority.

Header ``X-LLM-Priority``: ``low``, ``normal`` (default), ``high``, ``critical``. When a slot
frees, the waiting call of the highest priority (first come within one priority) takes it. A
call that finds ``queue.maxLength`` calls already waiting, or waits longer than
``queue.maxWaitMs``, is refused with 429 and ``Retry-After`` (``errors.QueueFull``). The slot is
held until the answer is finished (streams included). Off when ``maxConcurrent`` is null.
Inside batching (a merged call takes one slot) and outside fallback and retries.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable

from sluice_sidecar.contract.economics import QueueSpec
from sluice_sidecar.economics.batch_stats import BatchStats
from sluice_sidecar.errors import QueueFull
from sluice_sidecar.observability import otel
from sluice_sidecar.observability.prometheus import Metrics
from sluice_sidecar.pipeline.call import Call, Next
from sluice_sidecar.transports.base import UpstreamReply

PRIORITIES = {"critical": 0, "high": 1, "normal": 2, "low": 3}
RETRY_AFTER_S = 1.0
COMPACT_SLACK = 64  # dead entries tolerated before the heap is rebuilt


class PriorityQueueStage:
    def __init__(self, stats: BatchStats, metrics: Metrics) -> None:
        self._stats = stats
        self._metrics = metrics
        self.in_flight = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._live = 0  # tickets in _waiting still waiting (the others left, or were served)
        self._order = itertools.count()

    @property
    def depth(self) -> int:
        return self._live

    def __call__(self, call: Call, next_stage: Next) -> Awaitable[UpstreamReply]:
        spec = call.runtime.config.queue
        if spec.max_concurrent is None:
            return next_stage(call)  # no queue configured: no coroutine of this stage's
        return self._admitted(call, next_stage, spec, spec.max_concurrent)

    async def _admitted(
        self, call: Call, next_stage: Next, spec: QueueSpec, max_concurrent: int
    ) -> UpstreamReply:
        if self.in_flight >= max_concurrent or self.depth:
            await self._wait(call, spec.max_length, spec.max_wait_ms / 1000)
        else:
            self.in_flight += 1
        try:
            reply = await next_stage(call)
        except BaseException:
            self._release()
            raise
        if reply.streaming:
            reply.on_close.append(self._release)
        else:
            self._release()
        return reply

    async def _wait(self, call: Call, max_length: int, max_wait_s: float) -> None:
        name = call.client_headers.get("x-llm-priority", "normal").lower()
        rank = PRIORITIES.get(name, PRIORITIES["normal"])
        label = name if name in PRIORITIES else "normal"
        if self.depth >= max_length:
            self._refuse(label, "queue_full", f"{max_length} calls already waiting")
        loop = asyncio.get_running_loop()
        ticket: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._waiting, (rank, next(self._order), ticket))
        self._live += 1
        self._stats.queued += 1
        self._metrics.queue_depth.set(self.depth)
        started = loop.time()
        try:
            async with asyncio.timeout(max_wait_s):
                await ticket  # the slot is handed over by _release
        except (TimeoutError, asyncio.CancelledError) as error:
            if ticket.done() and not ticket.cancelled():
                # Handed over in the same loop turn as the timeout or the caller's departure:
                # this caller holds the slot it will not use, so pass it on (or free it).
                self._release()
            if isinstance(error, TimeoutError):
                self._refuse(label, "wait_timeout", f"waited {max_wait_s:.1f}s for a slot")
            raise
        finally:
            if not ticket.done():
                ticket.cancel()
            if ticket.cancelled():  # left without the slot: its entry is dead weight now
                self._live -= 1
                self._compact()
            waited = loop.time() - started
            self._stats.waits_s.append(waited)
            self._metrics.queue_wait.labels(label).observe(waited)
            otel.current_call().queue_waited(waited, label)
            self._metrics.queue_depth.set(self.depth)

    def _release(self) -> None:
        while self._waiting:
            _, _, ticket = heapq.heappop(self._waiting)
            if not ticket.done():
                ticket.set_result(None)  # the slot passes to this waiter: in_flight unchanged
                self._live -= 1
                return
        self.in_flight -= 1

    def _compact(self) -> None:
        """Drop the entries of waiters that left, once they outnumber the live ones: while a
        slot is held for long, refused waiters would otherwise pile up until it is released."""
        if len(self._waiting) > 2 * self._live + COMPACT_SLACK:
            self._waiting = [entry for entry in self._waiting if not entry[2].done()]
            heapq.heapify(self._waiting)

    def _refuse(self, priority: str, reason: str, detail: str) -> None:
        self._stats.queue_rejected += 1
        self._metrics.queue_rejections.labels(priority, reason).inc()
        raise QueueFull(
            f"the sidecar's concurrency limit is reached and {detail} (priority {priority})",
            retry_after=RETRY_AFTER_S,
        )
