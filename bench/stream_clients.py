"""Streaming clients for ``streaming.py``: one keep-alive connection each, streaming in a loop.

A client sends the request an official SDK sends (the openai SDK's chat completion with
``stream: true`` and ``include_usage``, or the anthropic SDK's message with ``stream: true``,
their headers included), reads the answer as it arrives and notes, per content chunk, its
arrival time and the upstream's write time stamped in it (``stream_upstream.py``). Then it
sends the next request on the same connection, as an SDK's pool does. A refused or failed
stream is counted and the client waits like an SDK would (``Retry-After``, else 1 s) before it
tries again on a new connection. Raw asyncio protocols, not the SDKs themselves: thousands of
SDK clients would saturate the load generator's core long before the proxy's.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time

import orjson

OPENAI_BODY = orjson.dumps(
    {
        "messages": [{"role": "user", "content": "Write a haiku about rivers."}],
        "model": "gpt-4o-mini",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
)
ANTHROPIC_BODY = orjson.dumps(
    {
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Write a haiku about rivers."}],
        "model": "claude-3-5-haiku-latest",
        "stream": True,
    }
)
STAINLESS = (
    "x-stainless-lang: python\r\nx-stainless-os: Linux\r\nx-stainless-arch: x64\r\n"
    "x-stainless-runtime: CPython\r\nx-stainless-runtime-version: 3.11.7\r\n"
    "x-stainless-retry-count: 0\r\nx-stainless-read-timeout: 600\r\n"
)
END_OF_BODY = b"\r\n0\r\n\r\n"  # the last chunk of a chunked answer
STAMP = b"~ts"  # never in a JSON key or the SDK fields
REFUSED_WAIT_S = 1.0


def sdk_request(api: str, host: str, path_prefix: str) -> bytes:
    """The bytes an SDK sends for one streaming call (``path_prefix``: ``""`` or ``/v1``)."""
    if api == "openai":
        path, body = f"{path_prefix}/v1/chat/completions", OPENAI_BODY
        auth = "authorization: Bearer sk-bench\r\nuser-agent: OpenAI/Python 1.99.0\r\n"
    else:
        path, body = f"{path_prefix}/v1/messages", ANTHROPIC_BODY
        auth = (
            "x-api-key: sk-ant-bench\r\nanthropic-version: 2023-06-01\r\n"
            "user-agent: Anthropic/Python 0.60.0\r\n"
        )
    head = (
        f"POST {path} HTTP/1.1\r\nhost: {host}\r\naccept-encoding: gzip, deflate\r\n"
        f"connection: keep-alive\r\naccept: application/json\r\n"
        f"content-type: application/json\r\n{auth}{STAINLESS}content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclasses.dataclass
class Window:
    """Only what happens between ``start`` and ``end`` (monotonic ns) is recorded."""

    start: int = 2**63
    end: int = 2**63

    def __contains__(self, t: int) -> bool:
        return self.start <= t < self.end


@dataclasses.dataclass
class Samples:
    ttfc_s: list[float] = dataclasses.field(default_factory=list)  # request sent -> 1st chunk
    gap_s: list[float] = dataclasses.field(default_factory=list)  # between chunks of a stream
    transit_s: list[float] = dataclasses.field(default_factory=list)  # upstream write -> arrival
    chunks: int = 0  # content chunks that arrived in the window
    streams: int = 0  # streams that ended complete in the window
    errors: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)


class StreamClient(asyncio.Protocol):
    def __init__(
        self, host: str, port: int, request: bytes, chunks: int, samples: Samples, window: Window
    ) -> None:
        self._address = (host, port)
        self._request = request
        self._chunks = chunks
        self._samples = samples
        self._window = window
        self._transport: asyncio.Transport | None = None
        self._stopped = False
        self._connecting: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self._head = b""
        self._status_ok: bool | None = None
        self._carry = b""
        self._sent_ns = 0
        self._last_ns = 0
        self._seen = 0

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: self, *self._address)
        except OSError:
            self._failed("connect", REFUSED_WAIT_S)

    def stop(self) -> None:
        self._stopped = True
        if self._transport is not None:
            self._transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        was_streaming = self._transport is not None and self._sent_ns
        self._transport = None
        if not self._stopped and was_streaming:
            self._failed("broken", REFUSED_WAIT_S)

    def _send(self) -> None:
        if self._stopped or self._transport is None:
            return
        self._reset()
        self._sent_ns = time.monotonic_ns()
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        if self._status_ok is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self._head[:end], self._head[end + 4 :]
            self._status_ok = head.startswith(b"HTTP/1.1 200")
            if not self._status_ok:
                status = head[9:12].decode(errors="replace")
                return self._failed(status, _retry_after(head))
        buffer = self._carry + data
        self._carry = self._read_stamps(buffer, now)
        if buffer.endswith(END_OF_BODY):
            if self._seen == self._chunks:
                if now in self._window:
                    self._samples.streams += 1
                self._send()
            else:
                self._failed("short", REFUSED_WAIT_S)

    def _read_stamps(self, buffer: bytes, now: int) -> bytes:
        """Record every stamped chunk in ``buffer``; return the tail that may hold a cut one."""
        samples, position = self._samples, 0
        while (found := buffer.find(STAMP, position)) >= 0:
            digits_end = found + len(STAMP)
            while digits_end < len(buffer) and 48 <= buffer[digits_end] <= 57:
                digits_end += 1
            if digits_end == len(buffer):
                return buffer[found:]  # the stamp may go on in the next read
            position = digits_end
            if digits_end == found + len(STAMP):
                continue  # not a stamp after all
            stamp = int(buffer[found + len(STAMP) : digits_end])
            if now in self._window:
                samples.chunks += 1
                samples.transit_s.append((now - stamp) / 1e9)
                if self._seen == 0:
                    if self._sent_ns in self._window:
                        samples.ttfc_s.append((now - self._sent_ns) / 1e9)
                else:
                    samples.gap_s.append((now - self._last_ns) / 1e9)
            self._seen += 1
            self._last_ns = now
        return buffer[-(len(STAMP) - 1) :]

    def _failed(self, kind: str, wait_s: float) -> None:
        if self._stopped:
            return
        if time.monotonic_ns() in self._window:
            self._samples.errors[kind] += 1
        self._sent_ns = 0
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        asyncio.get_running_loop().call_later(wait_s, self._reconnect)

    def _reconnect(self) -> None:
        if not self._stopped:
            self._connecting = asyncio.ensure_future(self.connect())


def _retry_after(head: bytes) -> float:
    for line in head.lower().split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name == b"retry-after":
            try:
                return min(max(float(value), 0.1), 10.0)
            except ValueError:
                break
    return REFUSED_WAIT_S
