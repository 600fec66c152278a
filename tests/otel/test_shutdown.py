"""Shutdown with the collector unreachable: bounded, so SIGTERM is not held up by retries."""

from __future__ import annotations

import os
import time

import pytest

from sluice_sidecar.observability.otel import (
    build_call_telemetry,
    close_call_telemetry,
    otel_config_from_env,
)
from tests.otel.collector import free_port
from tests.otel.views import CallStandIn, UsageStandIn


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
async def test_closing_with_the_collector_down_returns_within_its_bound(
    monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # closed
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    telemetry = build_call_telemetry(otel_config_from_env(os.environ), "test")
    telemetry.start(CallStandIn()).end(200, usage=UsageStandIn())
    started = time.monotonic()
    await close_call_telemetry(telemetry, timeout_s=0.5)
    assert time.monotonic() - started < 1.5  # unbounded, the exporters retry for about 7 s each
    await close_call_telemetry(telemetry, timeout_s=0.5)  # a second close does nothing
