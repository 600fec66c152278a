"""Embeddings micro-batching: concurrent ``/v1/embeddings`` calls merged into one upstream call.

Inside budgets (each caller reserves and settles its own share) and outside the queue and
fallback (the merged call is one call there). Calls merge when they agree on everything but
``input``: credentials, model, candidate providers, operation and every other body field. A
batch closes at ``maxBatchSize`` inputs or ``maxWaitMs`` after its first call, whichever comes
first; one call larger than the batch size goes alone. The merged answer's vectors are split
back in order (re-indexed from 0 per caller); the provider's ``prompt_tokens`` are attributed
in proportion to each caller's input text (largest remainder, so the shares add up to the
total). A failed merged call fails every caller in it with the same error; so does a merged
answer that cannot be split back (vectors missing, extra, not objects, or with indexes that are
not 0..n-1): every caller gets a 502 at once, in its own API format.

Each caller sees what it would alone: the merged call's provider, attempts and retries, its
time upstream (``Server-Timing``; the wait for the batch counts as queue time) and its attempts
sent and never answered, which the budget and usage stages price at this caller's own estimate,
so the callers' shares add up to the batch's. Each keeps its own deadline: the merged call runs
until the last of its callers has left (and is cancelled then), so a short ``X-LLM-Timeout``
cuts no other caller short. A caller that leaves before its batch is sent is taken out of it
(nothing of it goes upstream, nothing is charged); one that leaves while the merged call is out
takes the attempts made so far along and is charged as a cancelled call.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import orjson

from sluice_sidecar.economics.batch_stats import BatchStats
from sluice_sidecar.economics.cache_key import credential_hash
from sluice_sidecar.errors import UpstreamError
from sluice_sidecar.observability import otel
from sluice_sidecar.observability.prometheus import Metrics
from sluice_sidecar.pipeline.call import Call, Next
from sluice_sidecar.transports.base import UpstreamReply


@dataclass(slots=True)
class _Batch:
    calls: list[Call] = field(default_factory=list)
    inputs: list[list[Any]] = field(default_factory=list)
    size: int = 0
    # Each caller's answer by id() of its Call (two callers may send equal calls).
    done: asyncio.Future[dict[int, UpstreamReply]] | None = None
    timer: asyncio.TimerHandle | None = None
    merged: Call | None = None  # the call sent for the whole batch, once it is made
    task: asyncio.Task[None] | None = None  # the merged call, once the batch is closed
    left: int = 0  # callers gone (deadline, disconnect) after their inputs went upstream
    # Per caller, beside ``calls``: its telemetry, and its context, so the merged call runs in
    # the first caller's (its attempts are that caller's, linked to the others' traces).
    handles: list[otel.CallHandle] = field(default_factory=list)
    contexts: list[contextvars.Context] = field(default_factory=list)


class BatchingStage:
    def __init__(self, stats: BatchStats, metrics: Metrics) -> None:
        self._stats = stats
        self._metrics = metrics
        self._open: dict[str, _Batch] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # merged calls in flight (the loop holds
        # only weak references to tasks)

    async def __call__(self, call: Call, next_stage: Next) -> UpstreamReply:
        spec = call.runtime.config.batching.embeddings
        inputs = _inputs(call)
        if not spec.enabled or inputs is None or len(inputs) >= spec.max_batch_size:
            return await next_stage(call)
        key = _group(call)
        batch = self._open.get(key)
        if batch is not None and batch.size + len(inputs) > spec.max_batch_size:
            self._close(key, batch, next_stage)
            batch = None
        if batch is None:
            batch = self._open[key] = _Batch(done=asyncio.get_running_loop().create_future())
            batch.timer = asyncio.get_running_loop().call_later(
                spec.max_wait_ms / 1000, self._close, key, batch, next_stage
            )
        batch.calls.append(call)
        batch.inputs.append(inputs)
        batch.handles.append(otel.current_call())
        batch.contexts.append(contextvars.copy_context())
        batch.size += len(inputs)
        assert batch.done is not None
        if batch.size >= spec.max_batch_size:
            self._close(key, batch, next_stage)
        try:
            replies = await asyncio.shield(batch.done)
        except asyncio.CancelledError:
            self._leave(key, batch, call)
            raise
        except BaseException:
            _take_outcome(call, batch.merged)
            raise
        _take_outcome(call, batch.merged)
        return replies[id(call)]

    def _close(self, key: str, batch: _Batch, next_stage: Next) -> None:
        if self._open.get(key) is batch:
            del self._open[key]
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        # In the first caller's context whoever closes it (the timer, or the caller that
        # filled it): the merged call's attempts are that caller's.
        context = batch.contexts[0] if batch.contexts else None
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._send(batch, next_stage), context=context)
        batch.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _leave(self, key: str, batch: _Batch, call: Call) -> None:
        """A caller gone while it waited (its deadline, or it disconnected)."""
        if batch.merged is None:  # not sent yet: its inputs stay out of the merged call
            position = _position(batch, call)
            del batch.calls[position], batch.handles[position], batch.contexts[position]
            batch.size -= len(batch.inputs.pop(position))
            if not batch.calls and self._open.get(key) is batch:
                del self._open[key]
                if batch.timer is not None:
                    batch.timer.cancel()
            return
        # Its inputs went upstream with the others: it takes the attempts made so far along,
        # so the budget and usage stages charge its share (the provider bills the batch).
        _take_outcome(call, batch.merged)
        batch.left += 1
        if batch.left == len(batch.calls) and batch.task is not None:
            batch.task.cancel()  # nobody is waiting for the answer any more

    async def _send(self, batch: _Batch, next_stage: Next) -> None:
        """Make the merged call; whatever happens, every caller's future is resolved.

        Not bounded by a deadline of its own: each caller leaves at its own deadline, and the
        last one to leave cancels it, so one caller's short timeout cuts no other caller short.
        """
        assert batch.done is not None
        try:
            replies = await self._merged(batch, next_stage)
        except asyncio.CancelledError:
            batch.done.cancel()  # every caller has gone already
            raise
        except BaseException as error:
            if not batch.done.done():
                batch.done.set_exception(error)
                batch.done.exception()  # retrieved by the callers; never "never retrieved"
            return
        if not batch.done.done():
            # batch.calls is fixed once the merged call is made: nobody is taken out after.
            batch.done.set_result(dict(zip(map(id, batch.calls), replies, strict=True)))

    async def _merged(self, batch: _Batch, next_stage: Next) -> list[UpstreamReply]:
        if not batch.calls:  # every caller left before the batch was sent
            return []
        leader = batch.calls[0]
        if len(batch.calls) == 1:
            batch.merged = leader
            return [await next_stage(leader)]
        body = dict(leader.body or {})
        body["input"] = [item for inputs in batch.inputs for item in inputs]
        merged = dataclasses.replace(
            leader,
            body=body,
            raw_body=orjson.dumps(body),
            # The latest caller's: retries are planned for whoever still waits.
            deadline=max(c.deadline for c in batch.calls),
            prepared_bodies={},
            response_headers={},
            lost_attempts=[],
        )
        batch.merged = merged
        batch.handles[0].batched(batch.handles[1:])
        self._stats.batches += 1
        self._stats.requests_batched += len(batch.calls)
        self._stats.inputs_batched += batch.size
        self._metrics.batches.inc()
        self._metrics.batch_size.observe(len(batch.calls))
        self._metrics.batched.labels("embeddings").inc(len(batch.calls))
        reply = await next_stage(merged)
        try:
            return _split(reply, batch)
        finally:
            reply.close()


def _take_outcome(call: Call, merged: Call | None) -> None:
    """What the merged call did, as this caller's own: the provider, attempts and retries
    (headers, stats, log line), the time upstream (Server-Timing) and the attempts sent and
    never answered, priced at this caller's estimate (its share of what may be billed)."""
    if merged is None or merged is call:
        return
    call.provider = merged.provider
    call.attempts, call.retries = merged.attempts, merged.retries
    call.first_attempt_at, call.upstream_s = merged.first_attempt_at, merged.upstream_s
    call.lost_attempts[:] = merged.lost_attempts
    call.response_headers.update(merged.response_headers)


def _position(batch: _Batch, call: Call) -> int:
    """Where ``call`` is in its batch, by identity (two callers may send equal calls)."""
    return next(i for i, member in enumerate(batch.calls) if member is call)


def _inputs(call: Call) -> list[Any] | None:
    if call.kind != "embeddings" or call.body is None:
        return None
    value = call.body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None  # token arrays and odd shapes go alone


def _group(call: Call) -> str:
    rest = {k: v for k, v in (call.body or {}).items() if k != "input"}
    return orjson.dumps(
        [
            credential_hash(call.client_headers),
            call.operation.name,
            call.path,
            [p.name for p in call.runtime.providers],
            call.runtime.version,
            rest,
        ],
        option=orjson.OPT_SORT_KEYS,
    ).decode()


def _split(reply: UpstreamReply, batch: _Batch) -> list[UpstreamReply]:
    document = reply.json if isinstance(reply.json, dict) else {}
    data = _vectors(document, batch.size)
    usage = document.get("usage")
    total = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        total = None
    weights = [sum(len(text) for text in inputs) or 1 for inputs in batch.inputs]
    shares = _apportion(total, weights) if total is not None else None
    replies = []
    start = 0
    for position, inputs in enumerate(batch.inputs):
        items = [dict(item, index=i) for i, item in enumerate(data[start : start + len(inputs)])]
        start += len(inputs)
        answer = {k: v for k, v in document.items() if k not in ("data", "usage")}
        answer["data"] = items
        if shares is not None:
            answer["usage"] = {"prompt_tokens": shares[position], "total_tokens": shares[position]}
        body = orjson.dumps(answer)
        replies.append(UpstreamReply(reply.status, dict(reply.headers), body, answer))
    return replies


def _vectors(document: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """The answer's ``count`` embedding objects in input order; 502 when they are not that."""
    data = document.get("data")
    if not isinstance(data, list) or len(data) != count:
        found = f"{len(data)} items" if isinstance(data, list) else "no data list"
        raise _malformed(f"{found} for {count} inputs")
    if not all(isinstance(item, dict) for item in data):
        raise _malformed("an item that is not an object")
    if not any("index" in item for item in data):
        return data  # no indexes at all: in input order, as some compatible servers answer
    indexes = [item.get("index") for item in data]
    if sorted(i for i in indexes if type(i) is int) != list(range(count)):
        raise _malformed("indexes that are not 0.." + str(count - 1))
    return sorted(data, key=lambda item: item["index"])


def _malformed(what: str) -> UpstreamError:
    return UpstreamError(
        f"the provider's answer to a merged embeddings call has {what}; it cannot be split "
        "back to the callers",
        reason="malformed batch answer",
    )


def _apportion(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights``; the parts add up to ``total`` exactly."""
    whole = sum(weights)
    exact = [total * w / whole for w in weights]
    parts = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts
