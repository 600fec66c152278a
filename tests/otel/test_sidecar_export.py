"""A real sidecar exporting OTLP to a real OpenTelemetry Collector, over gRPC and HTTP.

The app side is the official openai and anthropic SDKs, streaming and not, one call carrying
the app's W3C ``traceparent``; the provider is the simulator. Everything asserted is read from
what the collector wrote.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import anthropic
import openai
import pytest

from tests.otel.collector import NEEDS_COLLECTOR, Collector, attributes_of, data_points
from tests.otel.views import APP_SPAN_ID, APP_TRACE_ID, APP_TRACEPARENT
from tests.support.sidecar import (
    SidecarHandle,
    anthropic_provider_for,
    close_test_sidecar,
    compile_policy,
    policy,
    provider_for,
    start_test_sidecar,
)
from tests.support.simulator import SimulatedLLM
from tests.support.waiting import wait_until

pytestmark = NEEDS_COLLECTOR
MESSAGES = [{"role": "user", "content": "Plan three scenes about a river"}]
SERVER, CLIENT = 2, 3  # OTLP/JSON span kinds
K8S_RESOURCE = {
    "k8s.namespace.name": "team-a",
    "k8s.pod.name": "studio-7d9f-x2k4p",
    "k8s.deployment.name": "studio",
}
K8S_RESOURCE_TEXT = ",".join(f"{key}={value}" for key, value in K8S_RESOURCE.items())


@pytest.fixture
async def llm() -> AsyncIterator[SimulatedLLM]:
    """A simulator whose streams arrive chunk by chunk (so time per output chunk is seen)."""
    async with SimulatedLLM(stream_chunk_delay_s=0.005) as sim:
        yield sim


@pytest.fixture(params=["grpc", "http/protobuf"])
async def exporting_sidecar(
    request: pytest.FixtureRequest,
    collector: Collector,
    llm: SimulatedLLM,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[SidecarHandle]:
    protocol = request.param
    endpoint = collector.grpc_endpoint if protocol == "grpc" else collector.http_endpoint
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "sluice-otel-test")
    # As the injector sets it, once the kubelet expanded its downward-API variables.
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", K8S_RESOURCE_TEXT)
    document = policy(
        providers=[provider_for(llm, "gpt-direct"), anthropic_provider_for(llm, "claude")]
    )
    handle = await start_test_sidecar(
        compile_policy(document), otel_traces=protocol, otel_metrics=protocol
    )
    yield handle
    if not handle.extra.get("closed"):
        await close_test_sidecar(handle)


async def close_to_flush(handle: SidecarHandle) -> None:
    """Stop the sidecar as SIGTERM does: pending spans and the last metrics are exported."""
    handle.extra["closed"] = True
    await close_test_sidecar(handle)


async def drive(sidecar: SidecarHandle) -> None:
    async with openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-app") as app:
        await app.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_headers={"traceparent": APP_TRACEPARENT},
        )
        stream = await app.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for _ in stream:
            pass
    async with anthropic.AsyncAnthropic(base_url=sidecar.anthropic_url, api_key="k") as app:
        await app.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=MESSAGES)
        async with app.messages.stream(
            model="claude-sonnet-4-5", max_tokens=50, messages=MESSAGES
        ) as stream:
            await stream.get_final_message()


def points(metrics: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [
        attributes_of(p) | {"_unit": m["unit"]}
        for m in metrics
        if m["name"] == name
        for p in data_points(m)
    ]


async def test_the_sidecar_exports_genai_metrics_and_call_spans(
    exporting_sidecar: SidecarHandle, collector: Collector, llm: SimulatedLLM
) -> None:
    await drive(exporting_sidecar)
    await close_to_flush(exporting_sidecar)
    await wait_until(
        lambda: (
            len([s for s in collector.spans() if s["kind"] == SERVER]) == 4
            and points(collector.metrics(), "gen_ai.client.operation.duration")
        ),
        limit_s=15,
    )

    spans = collector.spans()
    calls = [s for s in spans if s["kind"] == SERVER]
    attempts = [s for s in spans if s["kind"] == CLIENT]
    assert sorted(s["name"] for s in calls) == [
        "chat claude-sonnet-4-5",
        "chat claude-sonnet-4-5",
        "chat gpt-4o-mini",
        "chat gpt-4o-mini",
    ]
    assert {s["resource"]["service.name"] for s in calls} == {"sluice-otel-test"}
    for item in [*spans, *collector.metrics()]:
        assert item["resource"].items() >= K8S_RESOURCE.items()
    by_id = {s["spanId"]: s for s in calls}
    assert len(attempts) == 4 and all(a["parentSpanId"] in by_id for a in attempts)
    assert all(a["traceId"] == by_id[a["parentSpanId"]]["traceId"] for a in attempts)

    # The app's trace continues through the sidecar and on to the provider.
    (continued,) = [s for s in calls if s["traceId"] == APP_TRACE_ID]
    assert continued["parentSpanId"] == APP_SPAN_ID
    (attempt,) = [a for a in attempts if a["parentSpanId"] == continued["spanId"]]
    sent = [r.headers.get("traceparent", "") for r in llm.requests]
    assert f"00-{APP_TRACE_ID}-{attempt['spanId']}-01" in sent
    assert all(APP_SPAN_ID not in header for header in sent)  # the app's own span stays behind

    metrics = collector.metrics()
    durations = points(metrics, "gen_ai.client.operation.duration")
    providers = {(p["gen_ai.provider.name"], p["sluice.provider.name"]) for p in durations}
    assert providers == {("openai", "gpt-direct"), ("anthropic", "claude")}
    for point in durations:
        assert point["_unit"] == "s"
        assert point["gen_ai.operation.name"] == "chat"
        assert point["gen_ai.request.model"] in ("gpt-4o-mini", "claude-sonnet-4-5")
        # Streams included: read from OpenAI's chunks and Anthropic's message_start.
        assert point["gen_ai.response.model"] == point["gen_ai.request.model"]
        assert point["server.address"] == "127.0.0.1"
        assert point["server.port"] == urlsplit(llm.url).port
        assert "error.type" not in point
    tokens = points(metrics, "gen_ai.client.token.usage")
    assert {p["gen_ai.token.type"] for p in tokens} == {"input", "output"}
    assert {p["_unit"] for p in tokens} == {"{token}"}
    first_chunks = points(metrics, "gen_ai.client.operation.time_to_first_chunk")
    assert {p["gen_ai.response.model"] for p in first_chunks} == {
        "gpt-4o-mini",
        "claude-sonnet-4-5",
    }
    streamed = [attributes_of(s) for s in calls if attributes_of(s)["gen_ai.request.stream"]]
    assert len(streamed) == 2
    assert all(s["gen_ai.response.model"] == s["gen_ai.request.model"] for s in streamed)
    assert points(metrics, "gen_ai.client.operation.time_per_output_chunk")
