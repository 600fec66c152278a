"""OTLP metrics and traces on the OpenTelemetry GenAI semantic conventions.

The only package that imports ``opentelemetry``. Off unless an OTLP endpoint is configured
(``config.otel_config_from_env``). The server builds one ``CallTelemetry`` with
``build_call_telemetry`` and closes it with ``close_call_telemetry``; the proxy calls
``start(call)`` per call; stages use ``current_call()``. docs/observability.md lists every
instrument and attribute.
"""

from __future__ import annotations

import asyncio

from sluice_sidecar.otel.calls import CallTelemetry
from sluice_sidecar.otel.config import (
    OtelConfig,
    OtelConfigError,
    otel_config_from_env,
    otel_settings_from_env,
)
from sluice_sidecar.otel.handles import (
    NO_ATTEMPT,
    NO_CALL,
    Attempt,
    CallHandle,
    current_call,
    log_ids,
)
from sluice_sidecar.otel.providers import build_providers

__all__ = [
    "NO_ATTEMPT",
    "NO_CALL",
    "Attempt",
    "CallHandle",
    "CallTelemetry",
    "OtelConfig",
    "OtelConfigError",
    "build_call_telemetry",
    "close_call_telemetry",
    "current_call",
    "log_ids",
    "otel_config_from_env",
    "otel_settings_from_env",
]


def build_call_telemetry(config: OtelConfig, version: str) -> CallTelemetry:
    """The sidecar's telemetry: a do-nothing one when export is off."""
    if not config.enabled:
        return CallTelemetry()
    return CallTelemetry(build_providers(config, version), capture_content=config.capture_content)


async def close_call_telemetry(telemetry: CallTelemetry) -> None:
    """Export what is pending and stop (at SIGTERM); the SDK blocks, so in a thread. A second
    call does nothing."""
    providers, telemetry.providers = telemetry.providers, None
    if providers is not None:
        await asyncio.to_thread(providers.shutdown)
