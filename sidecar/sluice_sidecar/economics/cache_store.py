"""Answer cache back-ends: a bounded in-process LRU and Redis shared by every replica.

An entry is one complete answer: status, content type, whether it is an SSE stream, the bytes
(in memory also the parsed JSON, so a hit does not parse again; it is charged against the
byte bound at ``PARSED_FACTOR`` times the answer's size) and when it was stored, on the
back-end's clock (``now``), so an entry kept past its TTL for stale-if-error knows its age.
``MemoryCache`` is bounded by entry count and by bytes (least recently used evicted first)
and honours each entry's TTL.
``RedisCache`` stores ``header\\n body`` under ``sluice:cache:<key>`` with the TTL as expiry;
any Redis error is counted and treated as a miss (reads) or skipped (writes): a Redis outage
never fails a call. The errors it catches are handed in with the client, so this module does not
import redis-py (a sidecar without Redis never loads it). Statistics live in ``CacheStats``,
shared by both.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import orjson

logger = logging.getLogger("sluice.cache")
REDIS_PREFIX = "sluice:cache:"
PARSED_FACTOR = 3  # a parsed JSON answer takes about this many times its bytes in memory


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    status: int
    content_type: str
    stream: bool
    body: bytes
    document: Any = field(default=None, compare=False)  # parsed JSON body (memory only; read-only)
    stored_at: float = 0.0  # the back-end's clock when stored

    @property
    def size(self) -> int:
        """Bytes charged against ``maxBytes``: the answer, plus an estimate of its parsed form."""
        parsed = PARSED_FACTOR * len(self.body) if self.document is not None else 0
        return len(self.body) + parsed + len(self.content_type) + 64


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    bypasses: int = 0
    stores: int = 0
    evictions: int = 0
    errors: int = 0
    stale: int = 0  # answers served past their TTL because every provider failed
    saved: Decimal = field(default_factory=Decimal)

    def as_json(self) -> dict[str, Any]:
        looked = self.hits + self.misses
        return {
            "hits": self.hits,
            "misses": self.misses,
            "bypasses": self.bypasses,
            "stores": self.stores,
            "hitRate": round(self.hits / looked, 4) if looked else 0.0,
            "evictions": self.evictions,
            "errors": self.errors,
            "staleServed": self.stale,
            "savedUSD": str(self.saved),
        }


class CacheBackend(Protocol):
    name: str

    def now(self) -> float: ...  # the clock entries' ``stored_at`` is read on

    async def get(self, key: str) -> CachedAnswer | None: ...
    async def put(self, key: str, answer: CachedAnswer, ttl_s: int) -> None: ...
    def size(self) -> tuple[int, int]: ...  # entries, bytes (Redis: what this process knows)


class MemoryCache:
    name = "memory"

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        stats: CacheStats,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._stats = stats
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, CachedAnswer]] = OrderedDict()
        self._bytes = 0

    def now(self) -> float:
        return self._clock()

    def resize(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._evict()

    def lookup(self, key: str) -> CachedAnswer | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires, answer = found
        if expires <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return answer

    async def get(self, key: str) -> CachedAnswer | None:
        return self.lookup(key)

    async def put(self, key: str, answer: CachedAnswer, ttl_s: int) -> None:
        if answer.size > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (self._clock() + ttl_s, answer)
        self._bytes += answer.size
        self._evict()

    def size(self) -> tuple[int, int]:
        return len(self._entries), self._bytes

    def _drop(self, key: str) -> None:
        _, answer = self._entries.pop(key)
        self._bytes -= answer.size

    def _evict(self) -> None:
        while self._entries and (
            len(self._entries) > self.max_entries or self._bytes > self.max_bytes
        ):
            key = next(iter(self._entries))
            self._drop(key)
            self._stats.evictions += 1


class RedisCache:
    name = "redis"

    def __init__(
        self,
        client: Any,
        stats: CacheStats,
        on_error: Callable[[], None],
        errors: tuple[type[BaseException], ...],
    ) -> None:
        self._client = client
        self._stats = stats
        self._on_error = on_error
        self._errors = errors  # what the client raises for an outage: redis-py's RedisError

    async def get(self, key: str) -> CachedAnswer | None:
        try:
            raw = await self._client.get(REDIS_PREFIX + key)
        except self._errors as error:
            self._failed("read", error)
            return None
        if raw is None:
            return None
        header, _, body = raw.partition(b"\n")
        try:
            meta = orjson.loads(header)
        except orjson.JSONDecodeError:
            return None
        return CachedAnswer(
            meta["s"], meta["t"], meta["st"], body, stored_at=meta.get("at", time.time())
        )

    def now(self) -> float:
        return time.time()  # shared by replicas: wall-clock time

    async def put(self, key: str, answer: CachedAnswer, ttl_s: int) -> None:
        meta = {"s": answer.status, "t": answer.content_type, "st": answer.stream}
        header = orjson.dumps(meta | {"at": answer.stored_at})
        try:
            await self._client.set(REDIS_PREFIX + key, header + b"\n" + answer.body, ex=ttl_s)
        except self._errors as error:
            self._failed("write", error)

    def size(self) -> tuple[int, int]:
        return 0, 0  # shared: the server's INFO tells, not this process

    def _failed(self, what: str, error: BaseException) -> None:
        self._stats.errors += 1
        self._on_error()
        logger.warning("cache %s in Redis failed (going on without it): %s", what, error)
