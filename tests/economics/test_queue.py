"""The priority queue never loses a slot: not to a timeout, a departed caller, or load."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from sluice_sidecar.economics.batch_stats import BatchStats
from sluice_sidecar.errors import QueueFull
from sluice_sidecar.observability.prometheus import Metrics
from sluice_sidecar.pipeline.call import Call
from sluice_sidecar.pipeline.queue import PriorityQueueStage
from sluice_sidecar.pipeline.runtime import Runtime
from sluice_sidecar.transports.base import UpstreamReply
from tests.economics.calls import chat_call, runtime_of
from tests.support.sidecar import policy, provider_for
from tests.support.waiting import wait_until

MESSAGES = [{"role": "user", "content": "Name three rivers"}]


def queue_runtime(tmp_path: Path, **queue: object) -> Runtime:
    document = policy(
        providers=[{"name": "p", "type": "openai-compatible", "baseUrl": "http://127.0.0.1:9/v1"}],
        queue=queue,
    )
    return runtime_of(document, tmp_path)


async def _no_chunks() -> AsyncIterator[bytes]:
    return
    yield b""


async def streaming_answer(call: Call) -> UpstreamReply:
    """An answer that holds its slot until the test closes it."""
    return UpstreamReply(200, {}, first_chunk=b"data: {}\n\n", chunks=_no_chunks())


async def plain_answer(call: Call) -> UpstreamReply:
    return UpstreamReply(200, {}, b"{}", {})


async def test_a_slot_handed_over_as_the_wait_times_out_is_passed_on(tmp_path: Path) -> None:
    runtime = queue_runtime(tmp_path, maxConcurrent=1, maxWaitMs=0)
    queue = PriorityQueueStage(BatchStats(), Metrics())
    holder = await queue(chat_call(runtime), streaming_answer)
    assert queue.in_flight == 1
    loop = asyncio.get_running_loop()
    # Order the loop: the waiter queues up and arms its (zero) timeout; in the next turn the
    # holder's close hands it the slot and then, in that same turn, the timeout fires.
    loop.call_soon(loop.call_soon, holder.close)
    waiter = asyncio.create_task(queue(chat_call(runtime), plain_answer))
    with pytest.raises(QueueFull, match=r"waited 0\.0s for a slot"):
        await waiter
    assert queue.in_flight == 0 and queue.depth == 0
    await queue(chat_call(runtime), plain_answer)  # the slot is there for the next call
    assert queue.in_flight == 0


async def test_a_slot_handed_over_as_the_caller_leaves_is_passed_on(tmp_path: Path) -> None:
    runtime = queue_runtime(tmp_path, maxConcurrent=1, maxWaitMs=1000)
    queue = PriorityQueueStage(BatchStats(), Metrics())
    holder = await queue(chat_call(runtime), streaming_answer)
    waiter = asyncio.create_task(queue(chat_call(runtime), plain_answer))
    await wait_until(lambda: queue.depth == 1)
    loop = asyncio.get_running_loop()
    loop.call_soon(holder.close)  # hands the slot over ...
    loop.call_soon(waiter.cancel)  # ... and the caller leaves in the same turn
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert queue.in_flight == 0


async def test_queue_under_load_frees_every_slot(llm_factory, sidecar_factory) -> None:
    slow = await llm_factory(name="slow", latency_s=0.03)
    sidecar = await sidecar_factory(
        policy(providers=[provider_for(slow)], queue={"maxConcurrent": 2, "maxWaitMs": 50})
    )
    queue = sidecar.state.queue
    async with openai.AsyncOpenAI(
        base_url=sidecar.openai_url, api_key="sk-app", max_retries=0
    ) as c:
        for _ in range(3):
            results = await asyncio.gather(
                *(c.chat.completions.create(model="m", messages=MESSAGES) for _ in range(30)),
                return_exceptions=True,
            )
            refused = [r for r in results if isinstance(r, openai.RateLimitError)]
            assert refused, "the load must overflow the queue's wait"
            assert all(isinstance(r, openai.RateLimitError) or r.choices for r in results)
        await wait_until(lambda: queue.in_flight == 0 and queue.depth == 0)
        answers = await asyncio.gather(
            *(c.chat.completions.create(model="m", messages=MESSAGES) for _ in range(2))
        )
    assert all(a.choices for a in answers)


async def test_waiters_that_time_out_behind_a_held_slot_leave_nothing_behind(
    tmp_path: Path,
) -> None:
    runtime = queue_runtime(tmp_path, maxConcurrent=1, maxWaitMs=0, maxLength=10)
    queue = PriorityQueueStage(BatchStats(), Metrics())
    holder = await queue(chat_call(runtime), streaming_answer)  # holds the slot throughout
    for _ in range(2000):
        with pytest.raises(QueueFull):
            await queue(chat_call(runtime), plain_answer)
    assert queue.depth == 0
    assert len(queue._waiting) <= 100, "the entries of departed waiters must not pile up"
    holder.close()
    assert queue.in_flight == 0
