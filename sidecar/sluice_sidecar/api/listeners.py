"""The sidecar's TCP listeners: aiohttp's connection handling, plus a deadline on request headers.

aiohttp bounds an idle connection (``keepalive_timeout``, armed from the moment a connection
opens and after each answer) but has no timer of its own for a request whose headers arrive
slowly or stop half way. ``BoundedRequestHandler`` adds one: it starts at the first byte of a
request and is cancelled when the headers are complete and the request reaches the
application (``track_requests``, a middleware both apps carry). When it fires, the connection
is closed; no request exists yet, so there is nobody to answer. Body time is bounded in
``proxy.py``, where a request exists and a 408 can be answered in the caller's format.

Requests aiohttp's parser refuses (a bad request line, control characters in a header, a
header over aiohttp's 8190-byte line limit) have no route either: ``handle_error`` answers
them with the JSON error the listener was given (``protocol_error``) instead of aiohttp's
plain text, logs one line at debug level instead of a traceback at error level (a hostile
caller must not be able to flood the log), and counts them (``on_refused``).

A whole answer (not a stream: streams are written inside the call's deadline) must also be
sent within ``send_timeout_s``: a caller that stops reading (a slow read) would otherwise
hold the connection and the answer's memory for as long as it likes. The connection is
closed when that passes. A small answer with nothing queued ahead of it needs no timer: aiohttp
waits for a caller only once the transport holds more than its high-water mark (64 KiB on
asyncio and uvloop), so such an answer is handed over without waiting (most answers; the timer
was a few per cent of a cache hit's CPU).

``server.py`` serves each app through a ``BoundedSite``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

logger = logging.getLogger("sluice.listeners")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ProtocolError = Callable[[int, str], web.Response]  # (status, reason) -> the answer
SMALL_ANSWER_BYTES = 16 * 1024  # with its headers, well under the transports' high-water mark


class BoundedRequestHandler(web.RequestHandler):
    """One connection: aiohttp's protocol with the header deadline described above."""

    def __init__(
        self,
        manager: web.Server,
        *,
        header_timeout_s: float,
        send_timeout_s: float,
        on_refused: Callable[[str], None],
        protocol_error: ProtocolError,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout_s = header_timeout_s
        self._send_timeout_s = send_timeout_s
        self._on_refused = on_refused
        self._protocol_error = protocol_error
        self._header_timer: asyncio.TimerHandle | None = None
        self._in_request = False

    def data_received(self, data: bytes) -> None:
        if data and not self._in_request and self._header_timer is None:
            loop = asyncio.get_running_loop()
            self._header_timer = loop.call_later(self._header_timeout_s, self._headers_too_slow)
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def request_started(self) -> None:
        self._in_request = True
        self._cancel_header_timer()

    def request_finished(self) -> None:
        self._in_request = False

    async def send(self, request: web.Request, response: web.StreamResponse) -> None:
        """Send a whole answer within the send deadline, or close the connection."""
        if self._sent_without_waiting(response):
            await response.prepare(request)
            await response.write_eof()
            return
        try:
            async with asyncio.timeout(self._send_timeout_s):
                await response.prepare(request)
                await response.write_eof()
        except TimeoutError:
            self._on_refused("send_time")
            self.force_close()

    def _sent_without_waiting(self, response: web.StreamResponse) -> bool:
        """Whether writing ``response`` cannot wait for the caller (see the module docstring)."""
        transport = self.transport
        length = response.content_length
        return (
            transport is not None
            and length is not None
            and length <= SMALL_ANSWER_BYTES
            and transport.get_write_buffer_size() == 0
        )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self._in_request:
            self._on_refused("header_time")
            self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500 or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)  # a bug: traceback
        # The parser's message quotes the offending line after its first one: keep the first.
        reason = (message or HTTPStatus(status).phrase).strip().splitlines()[0]
        logger.debug("refused a request aiohttp cannot parse (%d): %s", status, reason)
        self._on_refused("http_parse")
        response = self._protocol_error(status, f"malformed HTTP request: {reason}")
        response.force_close()
        return response


@web.middleware
async def track_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tell the connection its request's headers are in (its header deadline no longer runs),
    and send a whole answer under the connection's send deadline."""
    protocol = request.protocol
    if not isinstance(protocol, BoundedRequestHandler):  # e.g. aiohttp's test server
        return await handler(request)
    protocol.request_started()
    try:
        response = await handler(request)
        if not response.prepared:
            await protocol.send(request, response)
        return response
    finally:
        protocol.request_finished()


class BoundedSite(web.BaseSite):
    """A TCP listener whose connections are ``BoundedRequestHandler``s of the runner's server."""

    __slots__ = ("_handler_options", "_host", "_port")

    def __init__(self, runner: web.AppRunner, host: str, port: int, **handler_options: Any) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._handler_options = handler_options

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None  # the runner was set up before the site was made

        def connection() -> BoundedRequestHandler:
            return BoundedRequestHandler(server, loop=loop, **self._handler_options)

        self._server = await loop.create_server(connection, self._host, self._port)
