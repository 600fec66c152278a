"""The otel package on the SDK's in-memory span exporter and metric reader."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from sluice_sidecar.observability.otel import NO_CALL, CallTelemetry, OtelConfig, current_call
from sluice_sidecar.observability.otel.attributes import OTHER
from sluice_sidecar.observability.otel.instruments import SECONDS_BUCKETS, TOKEN_BUCKETS
from sluice_sidecar.observability.otel.providers import build_providers
from tests.otel.views import (
    APP_SPAN_ID,
    APP_TRACE_ID,
    APP_TRACEPARENT,
    CallStandIn,
    ProviderStandIn,
    UsageStandIn,
)


class Recorded:
    def __init__(self, *, capture_content: bool = False) -> None:
        self.spans_out = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        providers = build_providers(
            OtelConfig(),
            "test",
            span_processor=SimpleSpanProcessor(self.spans_out),
            metric_reader=self.reader,
        )
        self.telemetry = CallTelemetry(providers, capture_content=capture_content)

    def spans(self) -> dict[str, ReadableSpan]:
        return {
            s.name + ("/attempt" if s.kind == SpanKind.CLIENT else ""): s
            for s in self.spans_out.get_finished_spans()
        }

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found = []
        for resource_metrics in data.resource_metrics if data else []:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found


@pytest.fixture
def recorded() -> Recorded:
    return Recorded()


def test_export_off_gives_every_call_the_do_nothing_handle() -> None:
    telemetry = CallTelemetry()
    assert not telemetry.enabled
    assert telemetry.start(CallStandIn()) is NO_CALL


def test_a_call_continues_the_apps_trace_and_each_attempt_is_a_child_span(recorded) -> None:
    call = CallStandIn(client_headers={"traceparent": APP_TRACEPARENT})
    handle = recorded.telemetry.start(call)
    assert current_call() is handle
    first = handle.attempt(ProviderStandIn(), "gpt-4o-mini", 1)
    headers: dict[str, str] = {"traceparent": APP_TRACEPARENT}
    first.inject(headers)
    first.end(503, "upstream_unavailable")
    handle.retry("primary", "upstream 503", 0.25, 1)
    second = handle.attempt(ProviderStandIn(), "gpt-4o-mini", 2)
    second.end(200)
    handle.end(200, usage=UsageStandIn(), response_model="gpt-4o-mini-2024", cost=Decimal("0.5"))
    assert current_call() is NO_CALL

    finished = recorded.spans_out.get_finished_spans()
    call_span = next(s for s in finished if s.kind == SpanKind.SERVER)
    attempts = [s for s in finished if s.kind == SpanKind.CLIENT]
    assert call_span.name == "chat gpt-4o-mini"
    assert format(call_span.context.trace_id, "032x") == APP_TRACE_ID
    assert format(call_span.parent.span_id, "016x") == APP_SPAN_ID
    assert [a.attributes["sluice.attempt"] for a in attempts] == [1, 2]
    assert all(a.parent.span_id == call_span.context.span_id for a in attempts)
    assert attempts[0].status.status_code == StatusCode.ERROR
    assert attempts[0].attributes["server.address"] == "127.0.0.1"
    assert attempts[0].attributes["server.port"] == 9999
    # The provider gets the first attempt's context: the app's trace, the attempt's span.
    assert headers["traceparent"] == (
        f"00-{APP_TRACE_ID}-{format(attempts[0].context.span_id, '016x')}-01"
    )
    assert call_span.attributes["gen_ai.usage.input_tokens"] == 12
    assert call_span.attributes["gen_ai.response.model"] == "gpt-4o-mini-2024"
    assert call_span.attributes["gen_ai.provider.name"] == "openai"
    assert call_span.attributes["sluice.provider.name"] == "primary"
    assert [e.name for e in call_span.events] == ["sluice.retry"]
    assert call_span.events[0].attributes["sluice.retry.delay_s"] == 0.25
    assert "gen_ai.input.messages" not in call_span.attributes


def test_metrics_carry_the_conventions_attributes_buckets_and_token_types(recorded) -> None:
    handle = recorded.telemetry.start(CallStandIn(api="anthropic", kind="messages", model="claude"))
    handle.attempt(
        ProviderStandIn("claude-direct", "anthropic", "https://api.example"), "claude", 1
    ).end(200)
    handle.end(200, usage=UsageStandIn(), response_model="claude-1", cost=Decimal("0.25"))

    (duration,) = recorded.points("gen_ai.client.operation.duration")
    assert tuple(duration.explicit_bounds) == SECONDS_BUCKETS
    assert dict(duration.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude",
        "gen_ai.response.model": "claude-1",
        "sluice.provider.name": "claude-direct",
        "sluice.operation": "summarize",
        "server.address": "api.example",
        "server.port": 443,
    }
    tokens = {
        p.attributes["gen_ai.token.type"]: p for p in recorded.points("gen_ai.client.token.usage")
    }
    assert set(tokens) == {"input", "output"}
    assert tokens["input"].sum == 12 and tokens["output"].sum == 34
    assert tuple(tokens["input"].explicit_bounds) == TOKEN_BUCKETS
    (cost,) = recorded.points("sluice.client.cost")
    assert cost.value == 0.25


def test_no_usage_from_the_provider_means_no_token_metric(recorded) -> None:
    recorded.telemetry.start(CallStandIn()).end(200)
    assert recorded.points("gen_ai.client.operation.duration")
    assert recorded.points("gen_ai.client.token.usage") == []


def test_an_error_is_an_error_type_on_the_duration_and_an_error_span(recorded) -> None:
    recorded.telemetry.start(CallStandIn()).end(504, error_type="deadline_exceeded")
    (duration,) = recorded.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == "deadline_exceeded"
    (span,) = recorded.spans_out.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "deadline_exceeded"


def test_a_stream_records_time_to_first_chunk_and_per_chunk_after_it(recorded) -> None:
    handle = recorded.telemetry.start(CallStandIn(stream=True))
    handle.attempt(ProviderStandIn(), "gpt-4o-mini", 1).end(200)
    for _ in range(4):
        handle.chunk()
    handle.end(200)
    (first,) = recorded.points("gen_ai.client.operation.time_to_first_chunk")
    (per_chunk,) = recorded.points("gen_ai.client.operation.time_per_output_chunk")
    assert first.count == 1 and per_chunk.count == 3
    assert first.attributes["sluice.provider.name"] == "primary"
    span = next(s for s in recorded.spans_out.get_finished_spans() if s.kind == SpanKind.SERVER)
    assert span.attributes["gen_ai.request.stream"] is True
    assert span.attributes["gen_ai.response.time_to_first_chunk"] >= 0


def test_a_call_that_is_not_streamed_records_no_chunk_metrics(recorded) -> None:
    recorded.telemetry.start(CallStandIn()).end(200)
    assert recorded.points("gen_ai.client.operation.time_to_first_chunk") == []


def test_each_pipeline_event_is_a_span_event_and_a_sluice_metric(recorded) -> None:
    handle = recorded.telemetry.start(CallStandIn())
    handle.cache_hit()
    handle.coalesced()
    handle.queue_waited(0.02, "high")
    handle.breaker_refused("primary")
    handle.fallback("primary", "backup", "circuit open")
    handle.budget_over("team", "cost", "soft")
    handle.end(200, usage=UsageStandIn(), cost=Decimal("0.1"), cache_status="hit")
    (span,) = recorded.spans_out.get_finished_spans()
    assert [e.name for e in span.events] == [
        "sluice.cache.hit",
        "sluice.coalesced",
        "sluice.queue.wait",
        "sluice.breaker.refused",
        "sluice.fallback",
        "sluice.budget.over",
    ]
    for name in (
        "sluice.cache.saved_cost",
        "sluice.coalesced",
        "sluice.queue.wait",
        "sluice.breaker.refusals",
        "sluice.fallbacks",
        "sluice.budget.refusals",
        "sluice.cache.requests",
    ):
        assert recorded.points(name), name


def test_model_names_on_metrics_are_bounded_but_spans_keep_them(recorded) -> None:
    for n in range(205):
        recorded.telemetry.start(CallStandIn(model=f"m{n}")).end(200)
    models = {
        p.attributes["gen_ai.request.model"]
        for p in recorded.points("gen_ai.client.operation.duration")
    }
    assert len(models) == 201 and OTHER in models
    assert "chat m204" in recorded.spans()


def test_content_is_recorded_only_when_opted_in() -> None:
    opted = Recorded(capture_content=True)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    opted.telemetry.start(CallStandIn(body=body)).end(200, output=[{"text": "hello"}])
    (span,) = opted.spans_out.get_finished_spans()
    assert '"content":"hi"' in span.attributes["gen_ai.input.messages"]
    assert "hello" in span.attributes["gen_ai.output.messages"]


def test_a_model_listing_is_traced_but_not_a_genai_metric(recorded) -> None:
    recorded.telemetry.start(CallStandIn(kind="models", model=None)).end(200)
    assert [s.name for s in recorded.spans_out.get_finished_spans()] == ["list_models"]
    assert recorded.points("gen_ai.client.operation.duration") == []


def test_a_cache_hit_counts_its_cost_as_saved_and_bills_no_tokens(recorded) -> None:
    handle = recorded.telemetry.start(CallStandIn())
    handle.cache_hit()
    handle.end(200, usage=UsageStandIn(), cost=Decimal("0.1"), cache_status="hit")
    (saved,) = recorded.points("sluice.cache.saved_cost")
    assert saved.value == 0.1
    assert recorded.points("sluice.client.cost") == []
    assert recorded.points("gen_ai.client.token.usage") == []


def test_answer_and_failure_reported_before_the_end_are_recorded_at_the_end(recorded) -> None:
    handle = recorded.telemetry.start(CallStandIn())
    handle.answer("gpt-4o-mini-2024")
    handle.end(200)
    handle = recorded.telemetry.start(CallStandIn())
    handle.failed("upstream_error")
    handle.end(502)
    by_error = {
        p.attributes.get("error.type"): p
        for p in recorded.points("gen_ai.client.operation.duration")
    }
    assert by_error[None].attributes["gen_ai.response.model"] == "gpt-4o-mini-2024"
    assert "upstream_error" in by_error
