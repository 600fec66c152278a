"""Real servers on loopback for the transport conformance suite.

``Upstream``: an aiohttp app (optionally TLS) answering JSON with Content-Length or chunked,
gzip, large answers, stepped SSE streams and requests it never answers; it notes what it
received and which connections were closed. ``StaleServer``: answers the first request on a
connection, then closes that connection when the next request arrives, unanswered (what a
provider's load balancer does to an idle keep-alive connection). ``ConnectProxy``: an HTTP
proxy that only tunnels (``CONNECT host:port``), as corporate egress proxies do.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ssl
from dataclasses import dataclass, field

import orjson
from aiohttp import web

SSE_FIRST = b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
SSE_NEXT = b'data: {"choices":[{"index":0,"delta":{"content":"b"}}]}\n\n'
SSE_END = b"data: [DONE]\n\n"


@dataclass
class Seen:
    peers: list[int] = field(default_factory=list)  # client port of each request
    accept_encoding: list[str] = field(default_factory=list)
    bodies: list[int] = field(default_factory=list)  # request body sizes
    user_agents: list[str | None] = field(default_factory=list)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)


class Upstream:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.seen = Seen()
        self.sse_steps: asyncio.Queue[bytes] = asyncio.Queue()
        self.large_bytes = 0
        self._tls = tls
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for path, handler in {
            "/json": self._json,
            "/chunked": self._chunked,
            "/gzip": self._gzip,
            "/large": self._large,
            "/sse": self._sse,
            "/hang": self._hang,
        }.items():
            app.router.add_post(path, handler)
        # handler_cancellation: a handler learns that its client went away.
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._tls)
        await site.start()
        scheme = "https" if self._tls else "http"
        # "localhost", not the address: the name the test certificate is issued for.
        self.url = f"{scheme}://localhost:{self._runner.addresses[0][1]}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _note(self, request: web.Request) -> bytes:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.seen.peers.append(peer[1] if peer else 0)
        self.seen.accept_encoding.append(request.headers.get("Accept-Encoding", ""))
        self.seen.bodies.append(len(body))
        self.seen.user_agents.append(request.headers.get("User-Agent"))
        return body

    async def _json(self, request: web.Request) -> web.Response:
        body = await self._note(request)
        return web.json_response({"ok": True, "received": len(body)}, dumps=_dumps)

    async def _chunked(self, request: web.Request) -> web.StreamResponse:
        await self._note(request)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"ok": ')
        await response.write(b"true}")
        await response.write_eof()
        return response

    async def _gzip(self, request: web.Request) -> web.Response:
        await self._note(request)
        body = gzip.compress(b'{"ok": true, "compressed": true}')
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        return web.Response(body=body, headers=headers)

    async def _large(self, request: web.Request) -> web.Response:
        await self._note(request)
        filler = b"x" * max(self.large_bytes - 12, 0)
        return web.Response(body=b'{"fill": "' + filler + b'"}', content_type="application/json")

    async def _sse(self, request: web.Request) -> web.StreamResponse:
        """The first event at once, then each step the test puts on ``sse_steps``."""
        await self._note(request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            await response.write(SSE_FIRST)
            while (step := await self.sse_steps.get()) != SSE_END:
                await response.write(step)
            await response.write(SSE_END)
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            self.seen.disconnected.set()
            raise
        return response

    async def _hang(self, request: web.Request) -> web.StreamResponse:
        await self._note(request)
        try:
            await asyncio.Event().wait()
        finally:
            self.seen.disconnected.set()
        raise AssertionError("unreachable")


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


class StreamServer:
    """A plain asyncio server on a loopback port; subclasses say how a connection is served."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class StaleServer(StreamServer):
    """Answers the first request of each connection, closes it on the second, unanswered."""

    def __init__(self) -> None:
        super().__init__()
        self.connections = 0
        self.answered = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await _read_request(reader)
            body = b'{"ok": true}'
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
            self.answered += 1
            await reader.read(1)  # the next request starts: close without an answer
        writer.close()


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)


class ConnectProxy(StreamServer):
    """An HTTP proxy that tunnels ``CONNECT`` requests and refuses everything else (405)."""

    def __init__(self) -> None:
        super().__init__()
        self.tunnels: list[str] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
        if method != b"CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        host, _, port = target.decode().rpartition(":")
        self.tunnels.append(target.decode())
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()
