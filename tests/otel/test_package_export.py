"""The otel package's own OTLP exporters, over gRPC and http/protobuf, into a real Collector.

What the collector wrote is the proof: metric names, units and attributes, the span tree and
the app's trace id. (The sidecar end to end: test_sidecar_export.py.)
"""

from __future__ import annotations

import os
from decimal import Decimal

import pytest

from sluice_sidecar.observability.otel import (
    build_call_telemetry,
    close_call_telemetry,
    otel_config_from_env,
)
from tests.otel.collector import (
    NEEDS_COLLECTOR,
    Collector,
    CollectorUnavailable,
    attributes_of,
    collector_binary,
    data_points,
)
from tests.otel.views import (
    APP_SPAN_ID,
    APP_TRACE_ID,
    APP_TRACEPARENT,
    CallStandIn,
    ProviderStandIn,
    UsageStandIn,
)
from tests.support.waiting import wait_until

pytestmark = NEEDS_COLLECTOR


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
async def test_spans_and_genai_metrics_reach_the_collector(
    collector: Collector, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    endpoint = collector.grpc_endpoint if protocol == "grpc" else collector.http_endpoint
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "sluice-under-test")
    telemetry = build_call_telemetry(otel_config_from_env(os.environ), "test")

    handle = telemetry.start(
        CallStandIn(stream=True, client_headers={"traceparent": APP_TRACEPARENT})
    )
    handle.attempt(ProviderStandIn(), "gpt-4o-mini", 1).end(200)
    handle.chunk()
    handle.chunk()
    handle.end(200, usage=UsageStandIn(), response_model="gpt-4o-mini", cost=Decimal("0.01"))
    await close_call_telemetry(telemetry)

    await wait_until(lambda: len(collector.spans()) == 2 and collector.metrics(), limit_s=10)
    spans = {span["kind"]: span for span in collector.spans()}
    server, client = spans[2], spans[3]  # OTLP SpanKind: 2 SERVER, 3 CLIENT
    assert server["traceId"] == client["traceId"] == APP_TRACE_ID
    assert server["parentSpanId"] == APP_SPAN_ID
    assert client["parentSpanId"] == server["spanId"]
    assert server["name"] == "chat gpt-4o-mini"
    assert server["resource"]["service.name"] == "sluice-under-test"

    metrics = {m["name"]: m for m in collector.metrics()}
    assert metrics["gen_ai.client.operation.duration"]["unit"] == "s"
    assert metrics["gen_ai.client.token.usage"]["unit"] == "{token}"
    assert metrics["gen_ai.client.operation.time_to_first_chunk"]["unit"] == "s"
    assert metrics["gen_ai.client.operation.time_per_output_chunk"]["unit"] == "s"
    (duration,) = data_points(metrics["gen_ai.client.operation.duration"])
    assert attributes_of(duration) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini",
        "sluice.provider.name": "primary",
        "sluice.operation": "summarize",
        "server.address": "127.0.0.1",
        "server.port": 9999,
    }
    token_types = {
        attributes_of(p)["gen_ai.token.type"]
        for p in data_points(metrics["gen_ai.client.token.usage"])
    }
    assert token_types == {"input", "output"}


def test_a_failed_collector_build_is_an_error_with_the_builds_reason(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SLUICE_OTELCOL_BUILD_TIMEOUT", "0.01")  # no build finishes in 10 ms
    with pytest.raises(CollectorUnavailable, match="build failed after"):
        collector_binary()
