"""Process lifecycle: create the state, load the first configuration, serve both ports.

Start-up order: transport, state, first configuration (config file, then policy folder), data
and admin listeners, policy watcher. Shutdown runs in reverse; listeners stop accepting first
and in-flight calls get ``SHUTDOWN_GRACE_S`` to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import yaml
from aiohttp import web

try:  # a dependency of the sidecar, absent only where no wheel exists for the platform
    import uvloop
except ImportError:  # pragma: no cover - every supported platform has it
    uvloop = None  # type: ignore[assignment]

from sluice_sidecar.api import fleet
from sluice_sidecar.api.admin import build_admin_app
from sluice_sidecar.api.listeners import BoundedSite, track_requests
from sluice_sidecar.api.proxy import build_data_app, protocol_error_response
from sluice_sidecar.contract.model import ConfigRejected
from sluice_sidecar.observability import otel
from sluice_sidecar.service.settings import SidecarSettings
from sluice_sidecar.service.standalone import (
    Fingerprint,
    fingerprint,
    load_policy_dir,
    watch_policy_dir,
)
from sluice_sidecar.service.state import SidecarState
from sluice_sidecar.transports.http import HttpTransport

logger = logging.getLogger("sluice.server")
SHUTDOWN_GRACE_S = 10.0


@dataclass
class RunningSidecar:
    state: SidecarState
    data_port: int
    admin_port: int
    telemetry: otel.CallTelemetry = field(default_factory=otel.CallTelemetry)
    _runners: list[web.AppRunner] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop_watch: asyncio.Event = field(default_factory=asyncio.Event)

    async def close(self) -> None:
        self._stop_watch.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for runner in self._runners:
            await runner.cleanup()  # stops accepting, lets in-flight calls finish
        # Every call has settled: the last word on this process's spend goes to the operator.
        await fleet.report_final_usage(self.state)
        await otel.close_call_telemetry(self.telemetry)  # pending spans, last metrics exported
        await self.state.close()
        await self.state.transport.close()  # type: ignore[attr-defined]


def load_initial_config(state: SidecarState) -> Fingerprint:
    """Load the config file, then the policy folder; returns the folder's fingerprint."""
    settings = state.settings
    if settings.config_file is not None:
        try:
            document = yaml.safe_load(settings.config_file.read_text())
            state.apply_document(document, source=str(settings.config_file))
        except (OSError, yaml.YAMLError, ConfigRejected) as error:
            problems = getattr(error, "problems", [str(error)])
            logger.error("cannot load %s:\n  %s", settings.config_file, "\n  ".join(problems))
    seen: Fingerprint = frozenset()
    if settings.policy_dir is not None:
        seen = fingerprint(settings.policy_dir) if settings.policy_dir.is_dir() else seen
        try:
            load_policy_dir(state, settings.policy_dir)
        except ConfigRejected as error:
            logger.error(
                "policies in %s rejected:\n  %s", settings.policy_dir, "\n  ".join(error.problems)
            )
    if state.runtime is None:
        logger.warning("no configuration loaded yet: not ready until one is PUT to /admin/config")
    return seen


def _admin_protocol_error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


def _admin_app(state: SidecarState) -> web.Application:
    app = build_admin_app(state)
    fleet.add_routes(app)
    return app


async def start_sidecar(
    settings: SidecarSettings, *, clock: Callable[[], float] = time.monotonic
) -> RunningSidecar:
    transport = HttpTransport(
        connection_limit=settings.upstream_connection_limit,
        max_answer_bytes=settings.max_answer_bytes,
        stream_idle_timeout_s=settings.stream_idle_timeout_s,
    )
    await transport.start()
    state = SidecarState(settings, transport, clock=clock)
    await state.start()
    seen = load_initial_config(state)
    access_log = logging.getLogger("sluice.access") if settings.access_log else None
    telemetry = otel.build_call_telemetry(settings.otel, _version())
    running = RunningSidecar(state, settings.data_port, settings.admin_port, telemetry)
    apps = [
        (
            build_data_app(state, telemetry),
            settings.data_host,
            settings.data_port,
            protocol_error_response,
        ),
        (_admin_app(state), settings.admin_host, settings.admin_port, _admin_protocol_error),
    ]
    ports = []
    for app, host, port, protocol_error in apps:
        app.middlewares.insert(0, track_requests)  # outermost: sees every request
        # handler_cancellation: a client that disconnects cancels its upstream call.
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=SHUTDOWN_GRACE_S)
        await runner.setup()
        site = BoundedSite(
            runner,
            host,
            port,
            access_log=access_log,
            keepalive_timeout=settings.keepalive_timeout_s,
            header_timeout_s=settings.header_timeout_s,
            send_timeout_s=settings.send_timeout_s,
            on_refused=lambda limit: state.metrics.refused.labels(limit).inc(),
            protocol_error=protocol_error,
        )
        await site.start()
        running._runners.append(runner)
        ports.append(runner.addresses[0][1])
    running.data_port, running.admin_port = ports
    if settings.policy_dir is not None and settings.watch:
        running._tasks.append(
            asyncio.create_task(
                watch_policy_dir(state, settings.policy_dir, running._stop_watch, seen=seen)
            )
        )
    logger.info(
        "sluice sidecar serving LLM API on %s:%d, admin on %s:%d (config %s, %s event loop)",
        settings.data_host,
        running.data_port,
        settings.admin_host,
        running.admin_port,
        state.version or "none",
        type(asyncio.get_running_loop()).__module__.partition(".")[0],
    )
    return running


def _version() -> str:
    try:
        return importlib.metadata.version("sluice")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop the sidecar runs on: uvloop where installed (less CPU per call and per
    stream chunk, docs/performance.md), else, or when ``asyncio`` is asked for, the standard one.
    """
    if name == "uvloop" and uvloop is not None:
        return uvloop.new_event_loop
    if name == "uvloop":
        logger.warning("uvloop is not installed: running on the asyncio event loop")
    return asyncio.new_event_loop


async def serve(settings: SidecarSettings) -> None:
    running = await start_sidecar(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        logger.info("shutting down")
    finally:
        await running.close()
