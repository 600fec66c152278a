"""The SDK's tracer and meter providers with their OTLP exporters, built once per sidecar.

Not the global providers: several sidecars can run in one process (the tests do), and an
application embedding the sidecar keeps its own. Export never runs on the event loop: spans
go through a ``BatchSpanProcessor`` (bounded queue, dropped past it; ``OTEL_BSP_*``),
metrics through a ``PeriodicExportingMetricReader`` (``OTEL_METRIC_EXPORT_INTERVAL``), both
exporting from their own threads. Endpoints, headers, timeouts, the resource
(``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``) and the sampler (``OTEL_TRACES_SAMPLER``)
are read by the SDK itself. Only the exporter of the configured protocol is imported (by name,
``EXPORTER_PACKAGES``): the gRPC one loads grpc and its C core, which an HTTP export never needs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import (
    SERVICE_NAME,
    SERVICE_VERSION,
    OTELResourceDetector,
    Resource,
)
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Tracer

from sluice_sidecar.observability.otel.config import OtelConfig, Protocol

SCOPE = "sluice_sidecar"
DEFAULT_SERVICE_NAME = "sluice-sidecar"
# The package of each protocol's exporters (``trace_exporter``, ``metric_exporter`` in it).
EXPORTER_PACKAGES: dict[Protocol, str] = {
    "grpc": "opentelemetry.exporter.otlp.proto.grpc",
    "http/protobuf": "opentelemetry.exporter.otlp.proto.http",
}


@dataclass
class Providers:
    tracer: Tracer | None  # None: traces are not exported
    meter: Meter | None  # None: metrics are not exported
    tracer_provider: TracerProvider | None
    meter_provider: MeterProvider | None

    def force_flush(self, timeout_ms: int = 5000) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush(timeout_ms)
        if self.meter_provider is not None:
            self.meter_provider.force_flush(timeout_ms)

    def shutdowns(self) -> list[Callable[[], object]]:
        """What exports the pending telemetry and stops each provider (each one blocks)."""
        return [p.shutdown for p in (self.tracer_provider, self.meter_provider) if p is not None]


def resource(version: str) -> Resource:
    """Sluice's defaults, overridden by ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME``."""
    defaults = Resource.create({SERVICE_NAME: DEFAULT_SERVICE_NAME, SERVICE_VERSION: version})
    return defaults.merge(OTELResourceDetector().detect())


def build_providers(
    config: OtelConfig,
    version: str,
    *,
    span_processor: SpanProcessor | None = None,
    metric_reader: MetricReader | None = None,
) -> Providers:
    """Providers for the signals ``config`` exports; the keyword arguments replace the OTLP
    processor or reader (the package's own tests pass in-memory ones)."""
    res = resource(version)
    tracer_provider = meter_provider = None
    if config.traces is not None or span_processor is not None:
        # shutdown_on_exit off: the server shuts them down, bounded (an atexit hook is not).
        tracer_provider = TracerProvider(resource=res, shutdown_on_exit=False)
        tracer_provider.add_span_processor(
            span_processor or BatchSpanProcessor(_span_exporter(config.traces or "grpc"))
        )
    if config.metrics is not None or metric_reader is not None:
        reader = metric_reader or PeriodicExportingMetricReader(
            _metric_exporter(config.metrics or "grpc")
        )
        meter_provider = MeterProvider(
            metric_readers=[reader], resource=res, shutdown_on_exit=False
        )
    return Providers(
        tracer=tracer_provider.get_tracer(SCOPE, version) if tracer_provider else None,
        meter=meter_provider.get_meter(SCOPE, version) if meter_provider else None,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    )


def _span_exporter(protocol: Protocol) -> SpanExporter:
    exporters = importlib.import_module(EXPORTER_PACKAGES[protocol] + ".trace_exporter")
    return exporters.OTLPSpanExporter()


def _metric_exporter(protocol: Protocol) -> MetricExporter:
    exporters = importlib.import_module(EXPORTER_PACKAGES[protocol] + ".metric_exporter")
    return exporters.OTLPMetricExporter()
