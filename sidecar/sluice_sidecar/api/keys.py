"""The typed keys under which the data, admin and fleet apps find the sidecar's shared objects."""

from __future__ import annotations

from aiohttp import web

from sluice_sidecar.observability import otel
from sluice_sidecar.service.state import SidecarState

STATE = web.AppKey("sluice_state", SidecarState)
OTEL = web.AppKey("sluice_otel", otel.CallTelemetry)
