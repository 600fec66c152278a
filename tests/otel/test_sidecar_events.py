"""What the pipeline did, as span events and child spans in the collector, and trace ids in
the sidecar's JSON logs: retries with their delay, a breaker refusal, fallback, a cache hit."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest

from sluice_sidecar.observability.logs import JsonFormatter
from tests.otel.collector import NEEDS_COLLECTOR, Collector, attributes_of, data_points
from tests.support.sidecar import (
    SidecarHandle,
    close_test_sidecar,
    compile_policy,
    policy,
    provider_for,
    start_test_sidecar,
)
from tests.support.simulator import Fail, SimulatedLLM
from tests.support.waiting import wait_until

pytestmark = NEEDS_COLLECTOR
SERVER = 2


class JsonLines(logging.Handler):
    """The sidecar's JSON log lines, as a log pipeline would read them."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def json_logs() -> Iterator[JsonLines]:
    handler = JsonLines()
    logger = logging.getLogger("sluice")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
async def sims() -> AsyncIterator[tuple[SimulatedLLM, SimulatedLLM]]:
    async with SimulatedLLM(name="primary") as primary, SimulatedLLM(name="backup") as backup:
        yield primary, backup


async def test_retries_breaker_fallback_and_cache_hit_are_span_events(
    collector: Collector,
    sims: tuple[SimulatedLLM, SimulatedLLM],
    monkeypatch: pytest.MonkeyPatch,
    json_logs: JsonLines,
) -> None:
    primary, backup = sims
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.grpc_endpoint)
    document = policy(
        providers=[provider_for(primary), provider_for(backup)],
        retry={"maxAttempts": 2, "baseDelayMs": 1, "maxDelayMs": 5},
        circuitBreaker={"failureThreshold": 2, "successThreshold": 1, "openSeconds": 30},
        cache={"enabled": True},
    )
    sidecar: SidecarHandle = await start_test_sidecar(
        compile_policy(document), otel_traces="grpc", otel_metrics="grpc"
    )
    try:
        primary.enqueue(Fail(503), Fail(503))  # two failures: retried, then the breaker opens
        async with openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="k") as app:
            for text in ("first", "first", "second"):  # a retried call, its cache hit, a refusal
                await app.chat.completions.create(
                    model="m", temperature=0, messages=[{"role": "user", "content": text}]
                )
    finally:
        await close_test_sidecar(sidecar)

    await wait_until(lambda: len([s for s in collector.spans() if s["kind"] == SERVER]) == 3)
    spans = collector.spans()
    retried, hit, refused = sorted(
        (s for s in spans if s["kind"] == SERVER), key=lambda s: int(s["startTimeUnixNano"])
    )
    events = {s["spanId"]: [e["name"] for e in s.get("events", [])] for s in spans}
    assert events[retried["spanId"]] == ["sluice.retry", "sluice.fallback"]
    retry = attributes_of(retried["events"][0])
    assert retry["sluice.provider.name"] == "primary"
    assert retry["sluice.retry.reason"] == "service_unavailable"  # as Prometheus labels it
    assert 0 <= retry["sluice.retry.delay_s"] <= 0.005
    attempts = [s for s in spans if s.get("parentSpanId") == retried["spanId"]]
    assert sorted(
        (attributes_of(a)["sluice.attempt"], attributes_of(a)["sluice.provider.name"])
        for a in attempts
    ) == [(1, "primary"), (2, "primary"), (3, "backup")]
    assert events[hit["spanId"]] == ["sluice.cache.hit"]
    assert attributes_of(hit)["sluice.cache.result"] == "hit"
    assert not [s for s in spans if s.get("parentSpanId") == hit["spanId"]]  # never sent
    assert events[refused["spanId"]] == ["sluice.breaker.refused", "sluice.fallback"]

    # The retry's warning carries the retried call's trace and span ids.
    (warning,) = [line for line in json_logs.lines if "retry 1/1" in line["message"]]
    assert warning["trace_id"] == retried["traceId"]
    assert warning["span_id"] == retried["spanId"]


async def test_with_export_off_the_apps_traceparent_reaches_the_provider_unchanged(
    llm: SimulatedLLM,
) -> None:
    sidecar = await start_test_sidecar(compile_policy(policy(providers=[provider_for(llm)])))
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    try:
        async with openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="k") as app:
            await app.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"traceparent": traceparent},
            )
    finally:
        await close_test_sidecar(sidecar)
    assert llm.requests[-1].headers["traceparent"] == traceparent


def calls_and_attempts(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calls' server spans and their attempts' spans, as far as they are written."""
    calls = [s for s in spans if s["kind"] == SERVER]
    ids = {s["spanId"] for s in calls}
    return calls + [s for s in spans if s.get("parentSpanId") in ids]


async def test_a_failed_call_has_error_type_on_its_span_attempts_and_duration(
    collector: Collector, llm: SimulatedLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.http_endpoint)
    document = policy(providers=[provider_for(llm)], retry={"maxAttempts": 2, "baseDelayMs": 1})
    sidecar = await start_test_sidecar(
        compile_policy(document), otel_traces="http/protobuf", otel_metrics="http/protobuf"
    )
    llm.enqueue(Fail(503), Fail(503))
    try:
        async with openai.AsyncOpenAI(
            base_url=sidecar.openai_url, api_key="k", max_retries=0
        ) as app:
            with pytest.raises(openai.APIStatusError) as caught:
                await app.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}]
                )
    finally:
        await close_test_sidecar(sidecar)

    # The collector writes each signal to its own file on its own flush: metrics written say
    # nothing of the spans, so each is awaited.
    await wait_until(lambda: any(m["name"] == "gen_ai.client.operation.duration"
                                 for m in collector.metrics()))  # fmt: skip
    await wait_until(lambda: len(calls_and_attempts(collector.spans())) >= 3)
    (call,) = [s for s in collector.spans() if s["kind"] == SERVER]
    code = attributes_of(call)["error.type"]
    assert attributes_of(call)["http.response.status_code"] == caught.value.status_code
    assert call["status"]["code"] == 2  # OTLP STATUS_CODE_ERROR
    attempts = [s for s in collector.spans() if s.get("parentSpanId") == call["spanId"]]
    assert [attributes_of(a)["http.response.status_code"] for a in attempts] == [503, 503]
    assert {attributes_of(a)["error.type"] for a in attempts} == {code}
    durations = [
        attributes_of(p)
        for m in collector.metrics()
        if m["name"] == "gen_ai.client.operation.duration"
        for p in data_points(m)
    ]
    assert [d["error.type"] for d in durations] == [code]
    assert not [m for m in collector.metrics() if m["name"] == "gen_ai.client.token.usage"]
