"""OTLP metrics and traces on the OpenTelemetry GenAI semantic conventions.

The only package that imports ``opentelemetry``. Off unless an OTLP endpoint is configured
(``config.otel_config_from_env``). The server builds one ``CallTelemetry`` with
``build_call_telemetry`` and closes it with ``close_call_telemetry``; the proxy calls
``start(call)`` per call; stages use ``current_call()``. docs/observability.md lists every
instrument and attribute.

The SDK and its OTLP exporters (grpc, protobuf: about a third of an idle sidecar's memory) are
in ``providers``, which only ``build_call_telemetry``'s enabling branch imports, by name: a
sidecar that does not export never loads them (docs/performance.md, "Footprint").
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
from collections.abc import Callable

from sluice_sidecar.observability.otel.calls import CallTelemetry
from sluice_sidecar.observability.otel.config import (
    OtelConfig,
    OtelConfigError,
    otel_config_from_env,
    otel_settings_from_env,
)
from sluice_sidecar.observability.otel.handles import (
    NO_ATTEMPT,
    NO_CALL,
    Attempt,
    CallHandle,
    current_call,
    log_ids,
)

logger = logging.getLogger("sluice.otel")
SHUTDOWN_TIMEOUT_S = 5.0
PROVIDERS_MODULE = "sluice_sidecar.observability.otel.providers"

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
    providers = importlib.import_module(PROVIDERS_MODULE).build_providers(config, version)
    return CallTelemetry(providers, capture_content=config.capture_content)


async def close_call_telemetry(
    telemetry: CallTelemetry, timeout_s: float = SHUTDOWN_TIMEOUT_S
) -> None:
    """Export what is pending and stop (at SIGTERM), waiting at most ``timeout_s``: with the
    collector down the exporters retry for longer than a pod's grace period should spend. The
    SDK blocks, so each provider shuts down in a daemon thread, which never holds up the
    process's exit. A second call does nothing."""
    providers, telemetry.providers = telemetry.providers, None
    if providers is None:
        return
    loop = asyncio.get_running_loop()
    waits = []
    for shutdown in providers.shutdowns():
        done = loop.create_future()
        threading.Thread(
            target=_run_then_resolve, args=(shutdown, loop, done), name="otel-shutdown", daemon=True
        ).start()
        waits.append(done)
    _, pending = await asyncio.wait(waits, timeout=timeout_s)
    if pending:
        logger.warning(
            "OTLP export did not finish within %.0f s at shutdown: pending telemetry dropped",
            timeout_s,
        )


def _run_then_resolve(
    shutdown: Callable[[], object], loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]
) -> None:
    try:
        shutdown()
    finally:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(_resolve, done)


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
