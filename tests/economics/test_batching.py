"""Coalescing, embeddings micro-batching and the priority queue through a real sidecar."""

from __future__ import annotations

import asyncio
import gc

import openai
import orjson
import pytest

from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import Fail, Garbage, Hang, SimulatedLLM
from tests.support.waiting import wait_until

MESSAGES = [{"role": "user", "content": "Describe a sluice gate"}]


async def streamed_text(c: openai.AsyncOpenAI) -> str:
    stream = await c.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, temperature=0, stream=True
    )
    return "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])


def client(sidecar: SidecarHandle) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-app", max_retries=0)


async def test_identical_calls_in_flight_share_one_upstream_call(
    llm_factory, sidecar_factory
) -> None:
    slow = await llm_factory(name="slow", latency_s=0.3)
    sidecar = await sidecar_factory(policy(providers=[provider_for(slow)], cache={"enabled": True}))
    async with client(sidecar) as c:

        async def one() -> tuple[str, str | None]:
            raw = await c.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=MESSAGES, temperature=0
            )
            return raw.parse().choices[0].message.content, raw.headers.get("x-sluice-coalesced")

        results = await asyncio.gather(*(one() for _ in range(5)))
    assert len(slow.requests) == 1
    assert len({text for text, _ in results}) == 1
    assert sorted(flag or "-" for _, flag in results) == ["-", "1", "1", "1", "1"]
    _, stats = await sidecar.admin("GET", "/admin/batching")
    assert stats["coalesced"] == 4
    _, usage = await sidecar.admin("GET", "/admin/usage")
    assert usage["totals"]["cacheHits"] == 4  # followers are metered as saved, not spent


async def test_concurrent_embeddings_are_merged_and_split_back(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(
        policy(
            providers=[provider_for(llm)],
            batching={"embeddings": {"enabled": True, "maxBatchSize": 8, "maxWaitMs": 200}},
        )
    )
    async with client(sidecar) as c:
        alone = await c.embeddings.create(model="text-embedding-3-small", input=["probe text"])
        inputs = [[f"alpha{i} beta", f"gamma{i} delta"] for i in range(4)]
        answers = await asyncio.gather(
            *(c.embeddings.create(model="text-embedding-3-small", input=i) for i in inputs)
        )
    merged = [r for r in llm.requests if r.path == "/v1/embeddings"][1:]
    assert len(merged) == 1 and len(merged[0].json["input"]) == 8
    for own, answer in zip(inputs, answers, strict=True):
        assert [d.index for d in answer.data] == [0, 1]
        assert answer.usage.prompt_tokens == 4  # two words per input, as if sent alone
        again = await _alone(sidecar, own)
        assert [d.embedding for d in answer.data] == [d.embedding for d in again.data]
    assert alone.data[0].embedding
    _, stats = await sidecar.admin("GET", "/admin/batching")
    assert stats["batches"] == 1 and stats["requestsBatched"] == 4
    assert stats["averageBatchSize"] == 4.0 and stats["batchEfficiency"] == 0.75


async def _alone(sidecar: SidecarHandle, inputs: list[str]):
    async with client(sidecar) as c:
        return await c.embeddings.create(
            model="text-embedding-3-small", input=inputs, extra_headers={"X-LLM-Cache": "bypass"}
        )


async def test_waiting_calls_run_in_priority_order(llm_factory, sidecar_factory) -> None:
    slow = await llm_factory(name="slow")
    # The first call holds the one slot until every other one is queued, however long queuing
    # them takes on a busy machine (a fixed latency let it finish first under load).
    slow.gate = asyncio.Event()
    sidecar = await sidecar_factory(
        policy(providers=[provider_for(slow)], queue={"maxConcurrent": 1})
    )
    queue = sidecar.state.queue
    async with client(sidecar) as c:

        async def call(priority: str) -> None:
            await c.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": priority}],
                extra_headers={"X-LLM-Priority": priority},
            )

        tasks = [asyncio.create_task(call("first"))]
        await wait_until(lambda: queue.in_flight == 1)
        for depth, priority in enumerate(["low", "normal", "critical", "high"], start=1):
            tasks.append(asyncio.create_task(call(priority)))
            await wait_until(lambda depth=depth: queue.depth == depth)
        slow.gate.set()
        await asyncio.gather(*tasks)
    order = [r.json["messages"][0]["content"] for r in slow.requests]
    assert order == ["first", "critical", "high", "normal", "low"]
    _, stats = await sidecar.admin("GET", "/admin/batching")
    assert stats["queue"]["queued"] == 4 and stats["queue"]["waitP95Ms"] > 0


async def test_queue_bounds_answer_429(llm_factory, sidecar_factory) -> None:
    slow = await llm_factory(name="slow", latency_s=0.5)
    sidecar = await sidecar_factory(
        policy(
            providers=[provider_for(slow)],
            queue={"maxConcurrent": 1, "maxLength": 1, "maxWaitMs": 100},
        )
    )
    queue = sidecar.state.queue
    async with client(sidecar) as c:
        busy = asyncio.create_task(c.chat.completions.create(model="m", messages=MESSAGES))
        await wait_until(lambda: queue.in_flight == 1)
        waiter = asyncio.create_task(c.chat.completions.create(model="m", messages=MESSAGES))
        await wait_until(lambda: queue.depth == 1)
        with pytest.raises(openai.RateLimitError) as full:
            await c.chat.completions.create(model="m", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError) as waited:
            await waiter
        await busy
    assert full.value.body["code"] == "queue_full" and "already waiting" in full.value.message
    assert "waited 0.1s" in waited.value.message
    assert full.value.response.headers["retry-after"] == "1"
    metrics = await sidecar.metrics_text()
    assert 'llm_queue_rejections_total{priority="normal",reason="queue_full"} 1.0' in metrics


async def test_identical_streams_in_flight_share_one_upstream_stream(
    llm_factory, sidecar_factory
) -> None:
    slow = await llm_factory(name="slow", stream_chunk_delay_s=0.05, chunks=4)
    sidecar = await sidecar_factory(policy(providers=[provider_for(slow)], cache={"enabled": True}))
    async with client(sidecar) as c:
        texts = await asyncio.gather(*(streamed_text(c) for _ in range(3)))
    assert len(slow.requests) == 1
    assert texts[0].startswith("Simulated answer") and len(set(texts)) == 1


async def test_a_stream_too_large_to_hold_lets_its_followers_go(
    llm_factory, sidecar_factory
) -> None:
    """Followers are not held for a stream past cache.maxEntryBytes: they make their own call."""
    slow = await llm_factory(name="slow", stream_chunk_delay_s=0.05, chunks=6)
    sidecar = await sidecar_factory(
        policy(providers=[provider_for(slow)], cache={"enabled": True, "maxEntryBytes": 256})
    )
    async with client(sidecar) as c:
        texts = await asyncio.gather(*(streamed_text(c) for _ in range(3)))
    assert len(slow.requests) == 3
    assert texts[0].startswith("Simulated answer") and len(set(texts)) == 1
    _, stats = await sidecar.admin("GET", "/admin/batching")
    assert stats["coalesced"] == 0


async def test_a_failed_merged_call_fails_every_caller_in_it(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(
        policy(
            providers=[provider_for(llm)],
            batching={"embeddings": {"enabled": True, "maxBatchSize": 4, "maxWaitMs": 200}},
        )
    )
    llm.enqueue(Fail(400, "bad input"))
    async with client(sidecar) as c:
        results = await asyncio.gather(
            *(
                c.embeddings.create(model="text-embedding-3-small", input=f"text {i}")
                for i in range(4)
            ),
            return_exceptions=True,
        )
    assert all(isinstance(r, openai.BadRequestError) for r in results)
    assert len(llm.requests) == 1


def _vectors(n: int) -> list[dict]:
    return [{"object": "embedding", "index": i, "embedding": [0.1, 0.2]} for i in range(n)]


MALFORMED_MERGED_ANSWERS = {
    "null items": {"object": "list", "data": [None] * 4},
    "string index": {
        "object": "list",
        "data": [dict(v, index=str(i)) for i, v in enumerate(_vectors(4))],
    },
    "items missing": {"object": "list", "data": _vectors(3)},
    "items too many": {"object": "list", "data": _vectors(5)},
    "repeated index": {"object": "list", "data": [dict(v, index=0) for v in _vectors(4)]},
    "data not a list": {"object": "list", "data": {"0": [0.1]}},
    "usage not an object": {"object": "list", "data": _vectors(4), "usage": [1]},
}


@pytest.mark.parametrize("answer", MALFORMED_MERGED_ANSWERS.values(), ids=MALFORMED_MERGED_ANSWERS)
async def test_a_merged_answer_that_cannot_be_split_fails_every_caller_at_once(
    llm: SimulatedLLM, sidecar_factory, caplog, answer: dict
) -> None:
    sidecar = await sidecar_factory(
        policy(
            providers=[provider_for(llm)],
            batching={"embeddings": {"enabled": True, "maxBatchSize": 4, "maxWaitMs": 200}},
        )
    )
    llm.enqueue(Garbage(200, orjson.dumps(answer), "application/json"))
    async with client(sidecar) as c, asyncio.timeout(5):  # the operation's deadline is 60 s
        results = await asyncio.gather(
            *(
                c.embeddings.create(model="text-embedding-3-small", input=f"text {i}")
                for i in range(4)
            ),
            return_exceptions=True,
        )
    if "usage" in answer:  # a usage block of the wrong shape is no reason to fail the vectors
        assert all(len(r.data) == 1 for r in results)
    else:
        assert all(isinstance(r, openai.InternalServerError) for r in results), results
        assert {r.status_code for r in results} == {502}
        assert all("merged embeddings call" in r.message for r in results)
    assert len(llm.requests) == 1
    gc.collect()  # an unretrieved task exception is reported when the task is collected
    assert "never retrieved" not in caplog.text


async def test_a_merged_call_ends_at_its_callers_deadline(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    """The callers' 504 must also close the merged call's upstream connection."""
    sidecar = await sidecar_factory(
        policy(
            providers=[provider_for(llm)],
            defaults={"timeoutSeconds": 0.3},
            batching={"embeddings": {"enabled": True, "maxBatchSize": 2, "maxWaitMs": 200}},
        )
    )
    llm.enqueue(Hang())
    async with client(sidecar) as c:
        results = await asyncio.gather(
            *(c.embeddings.create(model="text-embedding-3-small", input=f"t {i}") for i in (1, 2)),
            return_exceptions=True,
        )
        assert all(isinstance(r, openai.APIStatusError) and r.status_code == 504 for r in results)
        async with asyncio.timeout(2):
            await llm.disconnected.wait()
    assert len(llm.requests) == 1
