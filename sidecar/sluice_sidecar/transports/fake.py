"""An in-process transport driven by a handler function, for unit tests of pipeline stages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sluice_sidecar.transports.base import UpstreamReply, UpstreamRequest

Handler = Callable[[UpstreamRequest], Awaitable[UpstreamReply]]


class FakeTransport:
    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.requests: list[UpstreamRequest] = []

    async def send(self, request: UpstreamRequest) -> UpstreamReply:
        self.requests.append(request)
        return await self._handler(request)
