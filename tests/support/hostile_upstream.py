"""A misbehaving LLM provider on raw asyncio streams, so it can send HTTP no server library would.

``HostileUpstream`` is one server on 127.0.0.1 speaking just enough of the OpenAI and Anthropic
routes (chat, completions, embeddings, messages; streams where the route streams) to answer
well, or badly on purpose. What it does is chosen per request: the ``x-hostile`` request header
(a caller's header the sidecar forwards upstream, so a test picks it per call), else the next
behaviour of ``enqueue``, else ``ok``. Every connection is closed after one answer, so the
sidecar's pool holds nothing between calls and file descriptors can be counted.

Behaviours (``BEHAVIOURS``): ``ok``; broken HTTP (``bad-status-line``, ``bad-header``,
``bad-chunk``, ``binary-header``, ``header-flood``, ``informational-first``, ``no-content``,
``redirect``); broken connections (``reset-before-headers``, ``reset-after-headers``,
``stall``, ``stall-mid-body``, ``stall-after-end``, ``trickle``); size (``huge-body``,
``gzip-bomb``, ``long-error``, ``huge-error``, ``error-in-pieces``); wrong content
(``html-200``, ``invalid-sse``, ``sse-bad-json``, ``stream-cut``, ``json-to-stream``,
``malformed-answer``, ``error-echoes-key``); and ``429-…``/``503-…`` with odd Retry-After
values (``RETRY_AFTER_VALUES``). A test using the queue (``enqueue``) must not run calls with
different behaviours concurrently; the header has no such limit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gzip
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

BEHAVIOUR_HEADER = "x-hostile"
TRICKLE_INTERVAL_S = 0.02
HUGE_BODY_BYTES = 40 * 1024 * 1024  # past the sidecar's default answer limit (32 MiB)
BOMB_BYTES = 512 * 1024 * 1024  # what the gzip bomb inflates to
STALL_LIMIT_S = 30.0  # a stalled answer gives up on its own, so a broken test cannot hang

# Retry-After values no provider should send, each with the header that carries it.
RETRY_AFTER_VALUES = {
    "nan": ("retry-after", "nan"),
    "inf": ("retry-after", "inf"),
    "negative": ("retry-after", "-1"),
    "1e400": ("retry-after", "1e400"),
    "garbage": ("retry-after", "soon-ish"),
    "far-future": ("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"),
    "ms-nan": ("retry-after-ms", "nan"),
    "ms-inf": ("retry-after-ms", "inf"),
}


@dataclass(slots=True)
class HostileRequest:
    """One request as the server read it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any = None

    @property
    def stream(self) -> bool:
        return isinstance(self.json, dict) and self.json.get("stream") is True

    @property
    def anthropic(self) -> bool:
        return self.path.startswith("/v1/messages")


@dataclass(slots=True)
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    request: HostileRequest

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def head(self, status: str, headers: dict[str, str], *, chunked: bool = False) -> None:
        lines = [f"HTTP/1.1 {status}", "connection: close"]
        if chunked:
            lines.append("transfer-encoding: chunked")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def answer(self, status: str, content_type: str, body: bytes, **extra: str) -> None:
        headers = {"content-type": content_type, "content-length": str(len(body)), **extra}
        await self.head(status, headers)
        await self.send(body)

    async def chunk(self, data: bytes) -> None:
        await self.send(b"%x\r\n%s\r\n" % (len(data), data))

    async def end_chunks(self) -> None:
        await self.send(b"0\r\n\r\n")

    def reset(self) -> None:
        """Drop the connection with a TCP reset, not a clean close."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def until_closed(self) -> None:
        """Wait for the client to hang up (bounded), reading and dropping what it sends."""
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(STALL_LIMIT_S):
                while await self.reader.read(65536):
                    pass


Handler = Callable[["HostileUpstream", Connection], Awaitable[None]]


@dataclass
class HostileUpstream:
    """See the module docstring. ``async with HostileUpstream() as upstream: ...``."""

    host: str = "127.0.0.1"
    port: int = 0
    requests: list[HostileRequest] = field(default_factory=list)
    open_connections: int = 0
    _script: collections.deque[str] = field(default_factory=collections.deque)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    def enqueue(self, *behaviours: str) -> None:
        for name in behaviours:
            if name not in BEHAVIOURS:
                raise ValueError(f"unknown hostile behaviour {name!r}")
        self._script.extend(behaviours)

    def received(self, behaviour: str) -> list[HostileRequest]:
        return [r for r in self.requests if r.headers.get(BEHAVIOUR_HEADER) == behaviour]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> HostileUpstream:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.open_connections += 1
        try:
            request = await _read_request(reader)
            if request is None:
                return
            self.requests.append(request)
            name = request.headers.get(BEHAVIOUR_HEADER) or (
                self._script.popleft() if self._script else "ok"
            )
            await BEHAVIOURS[name](self, Connection(reader, writer, request))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the sidecar hung up first: routine for stalls and limits
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()
            self.open_connections -= 1
            self._tasks.discard(task)


async def _read_request(reader: asyncio.StreamReader) -> HostileRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    line, *header_lines = head.decode("latin-1").split("\r\n")
    method, path, _ = line.split(" ", 2)
    headers = {}
    for header in header_lines:
        if ":" in header:
            name, value = header.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    try:
        document = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        document = None
    return HostileRequest(method, path.split("?", 1)[0], headers, body, document)


# -- well-formed answers ---------------------------------------------------------------------


def good_json(request: HostileRequest) -> dict[str, Any]:
    path = request.path
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    if path.endswith("/embeddings"):
        inputs = request.json.get("input") if isinstance(request.json, dict) else None
        count = len(inputs) if isinstance(inputs, list) and inputs else 1
        data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2]} for i in range(count)]
        return {"object": "list", "data": data, "model": "m", "usage": usage}
    if path.endswith("/chat/completions"):
        message = {"role": "assistant", "content": "fine"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return {
            "id": "c1",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [choice],
            "usage": usage,
        }
    if path.endswith("/completions"):
        choice = {"index": 0, "text": "fine", "finish_reason": "stop"}
        return {
            "id": "t1",
            "object": "text_completion",
            "created": 1,
            "model": "m",
            "choices": [choice],
            "usage": usage,
        }
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": "fine"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }


def stream_events(request: HostileRequest) -> tuple[list[bytes], bytes]:
    """The events of a good stream for this route, and the terminator that ends it."""

    def event(data: dict[str, Any], name: str | None = None) -> bytes:
        prefix = f"event: {name}\n".encode() if name else b""
        return prefix + b"data: " + orjson.dumps(data) + b"\n\n"

    if request.anthropic:
        message: dict[str, Any] = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "m",
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 3, "output_tokens": 0},
        }
        body = [
            event({"type": "message_start", "message": message}, "message_start"),
            event(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            ),
            event(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "fine"},
                },
                "content_block_delta",
            ),
            event({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            event(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 2},
                },
                "message_delta",
            ),
        ]
        return body, event({"type": "message_stop"}, "message_stop")
    if request.path.endswith("/chat/completions"):
        deltas = [{"role": "assistant", "content": ""}, {"content": "fi"}, {"content": "ne"}]
        body = [
            event(
                {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "m",
                    "choices": [{"index": 0, "delta": d, "finish_reason": None}],
                }
            )
            for d in deltas
        ]
    else:
        body = [
            event(
                {
                    "id": "t1",
                    "object": "text_completion",
                    "created": 1,
                    "model": "m",
                    "choices": [{"index": 0, "text": t, "finish_reason": None}],
                }
            )
            for t in ("fi", "ne")
        ]
    return body, b"data: [DONE]\n\n"


SSE = "text/event-stream"
JSON = "application/json"


def _content_type(request: HostileRequest) -> str:
    return SSE if request.stream else JSON


# -- behaviours ------------------------------------------------------------------------------


async def ok(upstream: HostileUpstream, conn: Connection) -> None:
    request = conn.request
    if not request.stream:
        await conn.answer("200 OK", JSON, orjson.dumps(good_json(request)))
        return
    events, terminator = stream_events(request)
    await conn.head("200 OK", {"content-type": SSE}, chunked=True)
    for data in (*events, terminator):
        await conn.chunk(data)
    await conn.end_chunks()


async def bad_status_line(upstream: HostileUpstream, conn: Connection) -> None:
    await conn.send(b"HTTP/1.1 two-hundred OKAY\r\ncontent-length: 0\r\n\r\n")


async def bad_header(upstream: HostileUpstream, conn: Connection) -> None:
    await conn.send(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nthis is no header\r\n"
        b"content-length: 2\r\n\r\n{}"
    )


async def reset_before_headers(upstream: HostileUpstream, conn: Connection) -> None:
    conn.reset()


async def reset_after_headers(upstream: HostileUpstream, conn: Connection) -> None:
    content_type = _content_type(conn.request)
    await conn.head("200 OK", {"content-type": content_type, "content-length": "10000"})
    await conn.send(b'data: {"partial' if conn.request.stream else b'{"partial')
    conn.reset()


async def stall(upstream: HostileUpstream, conn: Connection) -> None:
    await conn.until_closed()


async def stall_mid_body(upstream: HostileUpstream, conn: Connection) -> None:
    """Headers and the first part of the answer (a stream's first event), then silence."""
    request = conn.request
    await conn.head("200 OK", {"content-type": _content_type(request)}, chunked=True)
    await conn.chunk(stream_events(request)[0][0] if request.stream else b'{"id": ')
    await conn.until_closed()


async def trickle(upstream: HostileUpstream, conn: Connection) -> None:
    """A never-ending answer, one byte at a time: no idle gap is long, the whole is endless."""
    request = conn.request
    await conn.head("200 OK", {"content-type": _content_type(request)}, chunked=True)
    if request.stream:
        await conn.chunk(stream_events(request)[0][0])
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(STALL_LIMIT_S):
            while True:
                await conn.chunk(b":" if request.stream else b" ")
                await asyncio.sleep(TRICKLE_INTERVAL_S)


async def huge_body(upstream: HostileUpstream, conn: Connection) -> None:
    """A JSON answer (or one SSE line) larger than any sane limit, sent as fast as possible."""
    await conn.head("200 OK", {"content-type": _content_type(conn.request)}, chunked=True)
    piece = b" " * (1024 * 1024)
    if conn.request.stream:
        await conn.chunk(b"data: ")
    for _ in range(HUGE_BODY_BYTES // len(piece)):
        await conn.chunk(piece)
    await conn.end_chunks()


def gzip_bomb_body(size: int = BOMB_BYTES) -> bytes:
    """Gzip of ``size`` blank bytes (whitespace: a valid JSON prefix), about size/1000 on the wire.

    Built as identical 8 MiB gzip members, which a gzip stream may chain: one is compressed and
    repeated, so the bomb costs nothing to make.
    """
    member_size = 8 * 1024 * 1024
    member = gzip.compress(b" " * member_size, compresslevel=9)
    return member * (size // member_size)


_BOMB: list[bytes] = []  # built once per process: it is the same bytes every time


async def gzip_bomb(upstream: HostileUpstream, conn: Connection) -> None:
    if not _BOMB:
        _BOMB.append(gzip_bomb_body())
    await conn.answer(
        "200 OK", _content_type(conn.request), _BOMB[0], **{"content-encoding": "gzip"}
    )


async def html_200(upstream: HostileUpstream, conn: Connection) -> None:
    await conn.answer("200 OK", "text/html", b"<html><body>Service moved</body></html>")


async def invalid_sse(upstream: HostileUpstream, conn: Connection) -> None:
    await conn.answer("200 OK", SSE, b"this is not an event stream\n\n")


async def sse_bad_json(upstream: HostileUpstream, conn: Connection) -> None:
    await conn.answer("200 OK", SSE, b"data: {not json\n\ndata: [DONE]\n\n")


async def stream_cut(upstream: HostileUpstream, conn: Connection) -> None:
    """A clean end of the HTTP answer, but the stream's (or JSON's) own end is missing."""
    request = conn.request
    await conn.head("200 OK", {"content-type": _content_type(request)}, chunked=True)
    if request.stream:
        for data in stream_events(request)[0]:
            await conn.chunk(data)
    else:
        await conn.chunk(orjson.dumps(good_json(request))[:-5])
    await conn.end_chunks()


async def stall_after_end(upstream: HostileUpstream, conn: Connection) -> None:
    """A whole answer (a stream with its terminator), but the HTTP answer never ends."""
    request = conn.request
    await conn.head("200 OK", {"content-type": _content_type(request)}, chunked=True)
    if request.stream:
        events, terminator = stream_events(request)
        for data in (*events, terminator):
            await conn.chunk(data)
    else:
        await conn.chunk(orjson.dumps(good_json(request)))
    await conn.until_closed()


async def json_to_stream(upstream: HostileUpstream, conn: Connection) -> None:
    """A good JSON answer whatever was asked: wrong for a stream (stream: true)."""
    await conn.answer("200 OK", JSON, orjson.dumps(good_json(conn.request)))


MALFORMED: dict[str, Any] = {
    "/v1/embeddings": {"object": "list", "data": [None, {"index": "one"}], "usage": "lots"},
    "/v1/chat/completions": {"choices": None, "usage": {"prompt_tokens": "many"}},
    "/v1/completions": {"choices": [{"text": None}], "usage": [1, 2]},
    "/v1/messages": {"type": "message", "content": "text", "usage": {"output_tokens": -5}},
}


async def malformed_answer(upstream: HostileUpstream, conn: Connection) -> None:
    """Valid JSON of the wrong shape (what a broken provider or a bad merge gives)."""
    await conn.answer("200 OK", JSON, orjson.dumps(MALFORMED.get(conn.request.path, [])))


async def error_echoes_key(upstream: HostileUpstream, conn: Connection) -> None:
    """A 401 quoting every header it received (credentials too), as debugging proxies do."""
    quoted = ", ".join(f"{k}={v}" for k, v in conn.request.headers.items())
    if conn.request.anthropic:
        error = {"type": "error", "error": {"type": "authentication_error", "message": quoted}}
    else:
        error = {"error": {"message": f"Incorrect API key provided: {quoted}", "type": "auth"}}
    await conn.answer("401 Unauthorized", JSON, orjson.dumps(error))


def _error_document(request: HostileRequest, message: str, kind: str) -> bytes:
    if request.anthropic:
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})
    return orjson.dumps({"error": {"message": message, "type": kind}})


async def long_error(upstream: HostileUpstream, conn: Connection) -> None:
    """A 503 whose error message is 33 KB long (a body the sidecar still relays)."""
    body = _error_document(conn.request, "overloaded " * 3000, "overloaded_error")
    await conn.answer("503 Service Unavailable", JSON, body)


async def huge_error(upstream: HostileUpstream, conn: Connection) -> None:
    """A 503 whose error body is 200 KB: over the sidecar's limit for error bodies."""
    body = _error_document(conn.request, "overloaded " * 20000, "overloaded_error")
    await conn.answer("503 Service Unavailable", JSON, body)


async def error_in_pieces(upstream: HostileUpstream, conn: Connection) -> None:
    """A 400 whose JSON body arrives in three parts, a little apart (as over a slow network)."""
    body = _error_document(conn.request, "bad request " * 100, "invalid_request_error")
    await conn.head("400 Bad Request", {"content-type": JSON, "content-length": str(len(body))})
    third = len(body) // 3
    for part in (body[:third], body[third : 2 * third], body[2 * third :]):
        await conn.send(part)
        await asyncio.sleep(TRICKLE_INTERVAL_S)


async def redirect(upstream: HostileUpstream, conn: Connection) -> None:
    """Send the call (and its credentials, if followed) somewhere else."""
    location = f"{upstream.url}/elsewhere{conn.request.path}"
    await conn.answer("307 Temporary Redirect", JSON, b"{}", location=location)


async def bad_chunk(upstream: HostileUpstream, conn: Connection) -> None:
    """A chunked answer whose chunk size is not a number."""
    await conn.head("200 OK", {"content-type": _content_type(conn.request)}, chunked=True)
    await conn.send(b"zz\r\nnot a chunk\r\n0\r\n\r\n")


async def informational_first(upstream: HostileUpstream, conn: Connection) -> None:
    """A 103 Early Hints before the real (good) answer."""
    await conn.send(b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n")
    await ok(upstream, conn)


async def binary_header(upstream: HostileUpstream, conn: Connection) -> None:
    """A good answer with a header value that is not text (bytes no encoding decodes)."""
    request = conn.request
    body = orjson.dumps(good_json(request))
    if request.stream:
        events, terminator = stream_events(request)
        body = b"".join((*events, terminator))
    head = f"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-type: {_content_type(request)}\r\n"
    await conn.send(
        head.encode() + b"x-odd: caf\xc3\xa9 \xff\xfe\x80\r\ncontent-length: %d\r\n\r\n" % len(body)
    )
    await conn.send(body)


async def no_content(upstream: HostileUpstream, conn: Connection) -> None:
    await conn.send(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")


async def header_flood(upstream: HostileUpstream, conn: Connection) -> None:
    """Thousands of headers, then a good answer."""
    flood = {f"x-flood-{n}": "y" * 64 for n in range(5000)}
    body = orjson.dumps(good_json(conn.request))
    await conn.answer("200 OK", JSON, body, **flood)


def _odd_wait(status: str, header: str, value: str) -> Handler:
    async def answer(upstream: HostileUpstream, conn: Connection) -> None:
        await conn.answer(status, JSON, b"", **{header: value})

    return answer


BEHAVIOURS: dict[str, Handler] = {
    "ok": ok,
    "bad-status-line": bad_status_line,
    "bad-header": bad_header,
    "reset-before-headers": reset_before_headers,
    "reset-after-headers": reset_after_headers,
    "stall": stall,
    "stall-mid-body": stall_mid_body,
    "trickle": trickle,
    "huge-body": huge_body,
    "gzip-bomb": gzip_bomb,
    "html-200": html_200,
    "invalid-sse": invalid_sse,
    "sse-bad-json": sse_bad_json,
    "stream-cut": stream_cut,
    "stall-after-end": stall_after_end,
    "json-to-stream": json_to_stream,
    "malformed-answer": malformed_answer,
    "error-echoes-key": error_echoes_key,
    "redirect": redirect,
    "long-error": long_error,
    "huge-error": huge_error,
    "error-in-pieces": error_in_pieces,
    "bad-chunk": bad_chunk,
    "informational-first": informational_first,
    "no-content": no_content,
    "binary-header": binary_header,
    "header-flood": header_flood,
    **{
        f"{status[:3]}-retry-after-{name}": _odd_wait(status, header, value)
        for name, (header, value) in RETRY_AFTER_VALUES.items()
        for status in ("429 Too Many Requests", "503 Service Unavailable")
    },
}
