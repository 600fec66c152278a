"""The memory cache: LRU bounded by entries and bytes, TTL, statistics."""

from __future__ import annotations

from sluice_sidecar.economics.cache_store import CachedAnswer, CacheStats, MemoryCache


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def answer(size: int = 10) -> CachedAnswer:
    return CachedAnswer(200, "application/json", False, b"x" * size)


async def test_lru_by_entries() -> None:
    stats = CacheStats()
    cache = MemoryCache(2, 10_000, stats)
    await cache.put("a", answer(), 60)
    await cache.put("b", answer(), 60)
    assert await cache.get("a") is not None  # a is now the most recent
    await cache.put("c", answer(), 60)
    assert await cache.get("b") is None and await cache.get("a") is not None
    assert stats.evictions == 1 and cache.size()[0] == 2


async def test_bounded_by_bytes() -> None:
    stats = CacheStats()
    cache = MemoryCache(100, 500, stats)
    for name in "abcdefgh":
        await cache.put(name, answer(100), 60)
    entries, size = cache.size()
    assert size <= 500 and entries == 500 // answer(100).size
    await cache.put("huge", answer(1000), 60)  # larger than the whole cache: not kept
    assert await cache.get("huge") is None


async def test_entries_expire() -> None:
    clock = Clock()
    cache = MemoryCache(10, 10_000, CacheStats(), clock=clock)
    await cache.put("a", answer(), 60)
    clock.now = 59.9
    assert await cache.get("a") is not None
    clock.now = 60.0
    assert await cache.get("a") is None and cache.size() == (0, 0)


def test_stats_hit_rate() -> None:
    stats = CacheStats(hits=3, misses=1)
    assert stats.as_json()["hitRate"] == 0.75
