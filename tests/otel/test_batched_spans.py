"""Embeddings calls merged into one upstream call, in the collector: the attempt is one span,
and every caller's trace leads to it (span links both ways), whoever closed the batch."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from tests.otel.collector import NEEDS_COLLECTOR, Collector, attributes_of
from tests.support.sidecar import (
    close_test_sidecar,
    compile_policy,
    policy,
    provider_for,
    start_test_sidecar,
)
from tests.support.simulator import SimulatedLLM
from tests.support.waiting import wait_until

pytestmark = NEEDS_COLLECTOR
SERVER, CLIENT = 2, 3
CALLERS = 3


def links_of(span: dict[str, Any]) -> set[str]:
    return {link["spanId"] for link in span.get("links", [])}


# Closed by its size (the last caller fills it) and by its wait (a timer, no caller running).
@pytest.mark.parametrize(("batch_size", "wait_ms"), [(CALLERS, 1000), (CALLERS + 1, 50)])
async def test_every_caller_of_a_merged_call_links_to_its_one_attempt(
    collector: Collector,
    llm: SimulatedLLM,
    monkeypatch: pytest.MonkeyPatch,
    batch_size: int,
    wait_ms: int,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.grpc_endpoint)
    batching = {"embeddings": {"enabled": True, "maxBatchSize": batch_size, "maxWaitMs": wait_ms}}
    document = policy(providers=[provider_for(llm)], batching=batching)
    sidecar = await start_test_sidecar(compile_policy(document), otel_traces="grpc")
    try:
        async with openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="k") as app:
            await asyncio.gather(
                *(app.embeddings.create(model="e", input=f"text {n}") for n in range(CALLERS))
            )
    finally:
        await close_test_sidecar(sidecar)
    assert len([r for r in llm.requests if r.path == "/v1/embeddings"]) == 1  # merged

    def exported() -> bool:
        spans = collector.spans()
        return (
            len([s for s in spans if s["kind"] == SERVER]) == CALLERS
            and len([s for s in spans if s["kind"] == CLIENT]) == 1
        )

    await wait_until(exported)
    spans = collector.spans()
    callers = {s["spanId"]: s for s in spans if s["kind"] == SERVER}
    (attempt,) = [s for s in spans if s["kind"] == CLIENT]
    # The attempt is the child of one caller (the first in the batch) ...
    (first,) = [c for c in callers.values() if c["spanId"] == attempt["parentSpanId"]]
    assert attempt["traceId"] == first["traceId"]
    others = {span_id for span_id in callers if span_id != first["spanId"]}
    # ... linked to the others, and each of them to it, with the attempt's number.
    assert links_of(attempt) == others
    for span_id in others:
        (link,) = callers[span_id]["links"]
        assert (link["traceId"], link["spanId"]) == (attempt["traceId"], attempt["spanId"])
        assert attributes_of(link)["sluice.attempt"] == 1
    for caller in callers.values():
        (event,) = [e for e in caller.get("events", []) if e["name"] == "sluice.batched"]
        assert attributes_of(event)["sluice.batch.calls"] == CALLERS
