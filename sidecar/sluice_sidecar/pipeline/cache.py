"""Exact-match answer cache: answer a repeated call from a stored answer, or store this one.

Inside the metering stage (a hit is metered as saved cost; the stream a hit replays is read
for usage like any other) and outside budgets (a hit spends nothing). A call is looked up when
the workload enables the cache, the route has answers (not ``/v1/models``) and the operation
allows it: ``always`` (the operation enabled caching) or ``deterministic`` (temperature, from the
request or else the operation's preset, at most ``temperatureCeiling``; a call without one runs
at the provider default of 1). ``Cache-Control: no-cache``/``no-store`` or ``X-LLM-Cache:
bypass`` skip the cache both ways. Only complete, well-formed 2xx answers are stored, so a
misbehaving upstream cannot poison the cache: a non-stream answer when it is a JSON object that
is not an error document; a stream when it is ``text/event-stream``, every event is
well-formed and it ended with its terminator (``data: [DONE]``, ``message_stop``), up to
``maxEntryBytes``. A hit replays a stream as one SSE chunk. The answer
carries ``x-sluice-cache: hit|miss|bypass`` whenever the workload has caching on.

Stale-if-error (``operations.<Name>.cache.staleIfErrorSeconds``): the operation's answers are
kept that long past their TTL; such an entry is no hit, but when the call then fails at every
provider (a transient error after retries and fallbacks, or every circuit open or bulkhead full)
it is served instead of the error, with ``x-sluice-cache: stale`` and its age past storage in
``x-sluice-stale-age-s``, and metered as a hit. The key holds the tenant and the caller's
credentials, so a stale answer never crosses tenants or keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from sluice_sidecar.contract.economics import CacheSpec
from sluice_sidecar.economics.cache_key import (
    VARIANT_HEADERS,
    KeyMemo,
    LastCredentials,
    cache_key,
)
from sluice_sidecar.economics.cache_store import CacheBackend, CachedAnswer, CacheStats
from sluice_sidecar.errors import NoProviderForModel, Refused, TransientUpstreamError
from sluice_sidecar.observability import otel
from sluice_sidecar.observability.prometheus import Metrics
from sluice_sidecar.pipeline.call import Call, Next
from sluice_sidecar.pipeline.runtime import Runtime
from sluice_sidecar.transports.base import UpstreamReply
from sluice_sidecar.transports.sse import is_complete_stream

DEFAULT_TEMPERATURE = 1.0
BYPASS_DIRECTIVES = ("no-cache", "no-store")
EVENT_STREAM = "text/event-stream"
# The list every answer of a route carries; an answer without it is not stored.
ANSWER_ITEMS = {
    "chat": "choices",
    "completions": "choices",
    "embeddings": "data",
    "messages": "content",
    "models": "data",
}

Select = Callable[[CacheSpec], CacheBackend]


class CacheStage:
    def __init__(self, select: Select, stats: CacheStats, metrics: Metrics) -> None:
        self._select = select
        self._stats = stats
        self._metrics = metrics
        results = ("hit", "miss", "bypass", "stale")
        self._results = {r: metrics.cache_requests.labels(r) for r in results}
        # Keys of repeated requests, valid for the configuration they were made under.
        self._memo = KeyMemo()
        self._memo_runtime: Runtime | None = None
        self._credentials = LastCredentials()

    async def __call__(self, call: Call, next_stage: Next) -> UpstreamReply:
        spec = call.runtime.config.cache
        if not spec.enabled or call.body is None or call.kind == "models":
            return await next_stage(call)
        if _bypass(call, spec):
            return await self._bypass(call, next_stage)
        key = self._key(call)
        if key is None:
            return await self._bypass(call, next_stage)
        call.cache_key = key
        backend = self._select(spec)
        found = await backend.get(key)
        operation = call.operation
        if found is not None and backend.now() - found.stored_at <= operation.cache_ttl_s:
            return self._hit(call, found)
        self._count(call, "miss")
        try:
            reply = await next_stage(call)
        except (TransientUpstreamError, Refused):
            # Nothing kept past its TTL, or kept longer than this operation's bound (by a
            # replica or a configuration that keeps answers longer: Redis is shared).
            if found is None or backend.now() - found.stored_at > _kept_for(call):
                raise
            return self._stale(call, found, backend.now() - found.stored_at)
        if 200 <= reply.status < 300:
            if reply.streaming:
                assert reply.chunks is not None
                # Outer stages may rewrite first_chunk and chunks: keep the provider's bytes now.
                first, source = reply.first_chunk, reply.chunks
                if _content_type(reply) == EVENT_STREAM:
                    reply.chunks = self._recording(first, source, reply, backend, key, call, spec)
            elif len(reply.body) <= spec.max_entry_bytes and _valid_answer(reply, call):
                content_type = reply.headers.get("content-type", "application/json")
                answer = CachedAnswer(
                    reply.status, content_type, False, reply.body, reply.json, backend.now()
                )
                await self._store(backend, key, answer, _kept_for(call))
        return reply

    def _key(self, call: Call) -> str | None:
        """The call's key: remembered for a request seen under this configuration, else made
        (and remembered); None when no provider serves the model."""
        if call.runtime is not self._memo_runtime:
            self._memo.clear()  # tenant and providers are the configuration's
            self._memo_runtime = call.runtime
        context = _key_context(call, self._credentials.hash(call.client_headers))
        if call.raw_body is not None and (found := self._memo.get(call.raw_body, context)):
            return found
        key = _make_key(call, context)
        if key is not None and call.raw_body is not None:
            self._memo.put(call.raw_body, context, key)
        return key

    async def _bypass(self, call: Call, next_stage: Next) -> UpstreamReply:
        self._count(call, "bypass")
        return await next_stage(call)

    def _count(self, call: Call, result: str) -> None:
        call.cache_status = result  # type: ignore[assignment]
        call.response_headers["x-sluice-cache"] = result
        self._results[result].inc()
        if result == "hit":
            self._stats.hits += 1
        elif result == "miss":
            self._stats.misses += 1
        else:
            self._stats.bypasses += 1

    def _hit(self, call: Call, answer: CachedAnswer) -> UpstreamReply:
        self._count(call, "hit")
        return self._replay(call, answer)

    def _stale(self, call: Call, answer: CachedAnswer, age_s: float) -> UpstreamReply:
        """Every provider failed: the answer kept past its TTL instead of the error."""
        call.cache_status = "hit"  # metered as one: the call cost nothing
        call.response_headers["x-sluice-cache"] = "stale"
        call.response_headers["x-sluice-stale-age-s"] = str(max(int(age_s), 0))
        self._results["stale"].inc()
        self._stats.stale += 1
        return self._replay(call, answer)

    def _replay(self, call: Call, answer: CachedAnswer) -> UpstreamReply:
        otel.current_call().cache_hit()
        call.response_headers["x-sluice-provider"] = "cache"
        headers = {"content-type": answer.content_type}
        if answer.stream:
            headers["cache-control"] = "no-cache"
            reply = UpstreamReply(answer.status, headers, first_chunk=answer.body, chunks=_none())
        else:
            document = answer.document
            if document is None:
                document = orjson.loads(answer.body)
            reply = UpstreamReply(answer.status, headers, answer.body, document)
        reply.on_close.append(lambda: self._saved(call))
        return reply

    def _saved(self, call: Call) -> None:
        if call.cost is not None:
            self._stats.saved += call.cost
            self._metrics.cache_saved.inc(float(call.cost))

    async def _store(self, backend: CacheBackend, key: str, answer: CachedAnswer, ttl: int):
        evicted = self._stats.evictions
        await backend.put(key, answer, ttl)
        self._stats.stores += 1
        if self._stats.evictions > evicted:
            self._metrics.cache_evictions.inc(self._stats.evictions - evicted)
        entries, size = backend.size()
        self._metrics.cache_entries.set(entries)
        self._metrics.cache_bytes.set(size)

    async def _recording(
        self,
        first: bytes,
        source: AsyncIterator[bytes],
        reply: UpstreamReply,
        backend: CacheBackend,
        key: str,
        call: Call,
        spec: CacheSpec,
    ) -> AsyncIterator[bytes]:
        parts: list[bytes] | None = [first]
        size = len(first)
        async for chunk in source:
            if parts is not None:
                size += len(chunk)
                if size <= spec.max_entry_bytes:
                    parts.append(chunk)
                else:
                    parts = None  # too large to keep: relay only
            yield chunk
        if parts is not None and is_complete_stream(body := b"".join(parts)):
            content_type = reply.headers.get("content-type", EVENT_STREAM)
            answer = CachedAnswer(reply.status, content_type, True, body, stored_at=backend.now())
            await self._store(backend, key, answer, _kept_for(call))


def _kept_for(call: Call) -> int:
    """How long an answer of this call is kept: its TTL, and its stale-if-error time after."""
    return call.operation.cache_ttl_s + call.operation.cache_stale_s


def _content_type(reply: UpstreamReply) -> str:
    return reply.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _valid_answer(reply: UpstreamReply, call: Call) -> bool:
    """A JSON answer of the route's shape, not an error document sent with a 2xx status."""
    document = reply.json
    content_type = _content_type(reply)
    if not (content_type in ("", "application/json") or content_type.endswith("+json")):
        return False
    if not isinstance(document, dict) or "error" in document:
        return False
    items = document.get(ANSWER_ITEMS[call.kind])
    return isinstance(items, list) and bool(items) and all(isinstance(i, dict) for i in items)


async def _none() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing


def _bypass(call: Call, spec: CacheSpec) -> bool:
    headers = call.client_headers
    if headers.get("x-llm-cache", "").lower() == "bypass":
        return True
    if control := headers.get("cache-control"):  # most calls send none: no scan
        lowered = control.lower()
        if any(directive in lowered for directive in BYPASS_DIRECTIVES):
            return True
    mode = call.operation.cache_mode
    if mode == "off":
        return True
    if mode == "always" or call.kind == "embeddings":
        return False
    return _temperature(call) > spec.temperature_ceiling


def _temperature(call: Call) -> float:
    body: dict[str, Any] = call.body or {}
    operation = call.operation
    value = body.get("temperature")
    if operation.temperature is not None and (operation.force_preset or value is None):
        return operation.temperature
    return value if isinstance(value, int | float) else DEFAULT_TEMPERATURE


KeyContext = tuple[Any, ...]


def _key_context(call: Call, credentials: str) -> KeyContext:
    """What goes into the key besides the body and the configuration. ``raw_body`` is the
    body's exact form (stages that rewrite the body rewrite it too), and the route names the
    API, the kind and so whether ``stream`` counts."""
    operation = call.operation
    headers = call.client_headers
    return (
        call.path,
        call.query,
        credentials,
        (
            operation.name,
            operation.temperature,
            operation.max_tokens,
            operation.top_p,
            operation.force_preset,
        ),
        tuple([headers.get(name, "") for name in VARIANT_HEADERS]),
    )


def _make_key(call: Call, context: KeyContext) -> str | None:
    assert call.body is not None and call.model is not None
    try:
        providers = call.runtime.candidates(call.api, call.model, call.operation)
    except NoProviderForModel:
        return None
    path, query, credentials, operation, variant = context
    return cache_key(
        tenant=call.runtime.config.workload.identity,
        credentials=credentials,
        route=f"{path}?{query}",
        operation=operation,
        providers=tuple(p.name for p in providers),
        stream=call.stream,
        body=call.body,
        variant=variant,
    )
