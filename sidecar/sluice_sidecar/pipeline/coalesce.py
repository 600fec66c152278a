"""Coalescing: identical cacheable calls in flight at the same time share one upstream call.

Inside the cache stage (it reads ``call.cache_key``, set only for cacheable calls) and outside
budgets (a follower spends nothing). The first call with a key is the leader and goes on; calls
with the same key arriving before it finished wait for its complete answer and get a copy
(a stream is replayed as SSE once the leader's stream has ended). A follower is metered like a
cache hit (saved cost) and answered with ``x-sluice-coalesced: 1``. If the leader fails, or its
answer is not a complete 2xx, each follower makes its own call. Bounded by the calls in flight;
a leader's stream is kept for its followers only up to ``cache.maxEntryBytes`` (the size the
cache would keep): past it the followers are let go at once to make their own calls, and the
leader's stream goes on unrecorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson

from sluice_sidecar.economics.batch_stats import BatchStats
from sluice_sidecar.observability import otel
from sluice_sidecar.observability.prometheus import Metrics
from sluice_sidecar.pipeline.call import Call, Next
from sluice_sidecar.transports.base import UpstreamReply

Shared = tuple[int, str, bool, bytes]  # status, content type, stream, body


class CoalesceStage:
    def __init__(self, stats: BatchStats, metrics: Metrics) -> None:
        self._stats = stats
        self._metrics = metrics
        self._leaders: dict[str, asyncio.Future[Shared | None]] = {}

    async def __call__(self, call: Call, next_stage: Next) -> UpstreamReply:
        key = call.cache_key
        if key is None or not call.runtime.config.batching.coalesce_identical:
            return await next_stage(call)
        leader = self._leaders.get(key)
        if leader is not None:
            shared = await asyncio.shield(leader)
            if shared is not None:
                return self._follow(call, shared)
            return await next_stage(call)
        future: asyncio.Future[Shared | None] = asyncio.get_running_loop().create_future()
        self._leaders[key] = future
        try:
            reply = await next_stage(call)
        except BaseException:
            self._finish(key, future, None)
            raise
        if not 200 <= reply.status < 300:
            self._finish(key, future, None)
        elif reply.streaming:
            assert reply.chunks is not None
            first, source = reply.first_chunk, reply.chunks
            limit = call.runtime.config.cache.max_entry_bytes
            reply.chunks = self._recording(key, future, reply, first, source, limit)
            reply.on_close.append(lambda: self._finish(key, future, None))
        else:
            content_type = reply.headers.get("content-type", "application/json")
            self._finish(key, future, (reply.status, content_type, False, reply.body))
        return reply

    def _finish(self, key: str, future: asyncio.Future[Shared | None], shared: Shared | None):
        if not future.done():
            future.set_result(shared)
        if self._leaders.get(key) is future:
            del self._leaders[key]

    async def _recording(
        self,
        key: str,
        future: asyncio.Future[Shared | None],
        reply: UpstreamReply,
        first: bytes,
        source: AsyncIterator[bytes],
        limit: int,
    ) -> AsyncIterator[bytes]:
        parts: list[bytes] | None = [first]
        size = len(first)
        async for chunk in source:
            if parts is not None:
                size += len(chunk)
                if size <= limit:
                    parts.append(chunk)
                else:  # too large to hold for the followers: let them go now
                    parts = None
                    self._finish(key, future, None)
            yield chunk
        if parts is not None:
            content_type = reply.headers.get("content-type", "text/event-stream")
            self._finish(key, future, (reply.status, content_type, True, b"".join(parts)))

    def _follow(self, call: Call, shared: Shared) -> UpstreamReply:
        status, content_type, stream, body = shared
        self._stats.coalesced += 1
        self._metrics.batched.labels("coalesced").inc()
        otel.current_call().coalesced()
        call.cache_status = "hit"  # metered as saved, like a cache hit
        call.response_headers["x-sluice-coalesced"] = "1"
        headers = {"content-type": content_type}
        if stream:
            return UpstreamReply(status, headers, first_chunk=body, chunks=_none())
        return UpstreamReply(status, headers, body, orjson.loads(body))


async def _none() -> AsyncIterator[bytes]:
    return
    yield b""
