"""A paced SSE upstream for ``streaming.py``: the first token after a delay, then a chunk per tick.

It answers every ``POST /v1/chat/completions`` with an OpenAI chat-completion stream and every
``POST /v1/messages`` with an Anthropic message stream (both with usage and their terminator),
HTTP/1.1 keep-alive, chunked. It is a bare ``asyncio.Protocol`` rather than an aiohttp app so
that thousands of paced streams cost the load generator's core little. Each content delta
carries the ``time.monotonic_ns()`` at which it was written (``"~ts<ns>"``), the clock every
process on the machine shares: a client subtracts it from the arrival time to get each chunk's
transit time through whatever sits in between.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import orjson

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
# Anything else (the readiness probes: GET /v1/models) gets an empty model list.
OTHER = (
    b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"data":[]}'
)
MAX_HEAD = 64 * 1024


@dataclasses.dataclass
class Pacing:
    """How every stream is paced: the first content chunk, then ``chunks - 1`` more.

    Shared by every connection and changed between scenarios, so the proxies in front keep
    one upstream address for the whole run.
    """

    first_token_s: float
    interval_s: float
    chunks: int


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _openai_delta(stamp: int, first: bool) -> bytes:
    delta = (
        {"role": "assistant", "content": f"~ts{stamp} "} if first else {"content": f"~ts{stamp} "}
    )
    event = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    return b"data: " + orjson.dumps(event) + b"\n\n"


def _openai_end(chunks: int) -> bytes:
    stop = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }
    usage = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [],
        "usage": {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks},
    }
    return (
        b"data: " + orjson.dumps(stop) + b"\n\n"
        b"data: " + orjson.dumps(usage) + b"\n\n"
        b"data: [DONE]\n\n"
    )


def _anthropic_event(name: str, data: dict[str, object]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"


def _anthropic_delta(stamp: int, first: bool) -> bytes:
    delta = _anthropic_event(
        "content_block_delta",
        {"index": 0, "delta": {"type": "text_delta", "text": f"~ts{stamp} "}},
    )
    if not first:
        return delta
    message = {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-3-5-haiku-latest",
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 1},
    }
    return (
        _anthropic_event("message_start", {"message": message})
        + _anthropic_event(
            "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
        )
        + delta
    )


def _anthropic_end(chunks: int) -> bytes:
    return (
        _anthropic_event("content_block_stop", {"index": 0})
        + _anthropic_event(
            "message_delta",
            {
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": chunks},
            },
        )
        + _anthropic_event("message_stop", {})
    )


class StreamServer(asyncio.Protocol):
    """One keep-alive connection: read a request, stream the paced answer, repeat."""

    def __init__(self, pacing: Pacing, counters: dict[str, int]) -> None:
        self._pacing = pacing
        self._counters = counters
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._next_request()

    def _next_request(self) -> None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD and self._transport is not None:
                self._transport.close()
            return
        head = bytes(self._buffer[:end]).lower()
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name == b"content-length":
                length = int(value)
        if len(self._buffer) < end + 4 + length:
            return
        del self._buffer[: end + 4 + length]
        target = head.split(b" ", 2)[1]
        assert self._transport is not None
        if target.endswith(b"/chat/completions"):
            delta, ending = _openai_delta, _openai_end
        elif target.endswith(b"/messages"):
            delta, ending = _anthropic_delta, _anthropic_end
        else:
            self._transport.write(OTHER)
            return self._next_request()
        self._busy = True
        self._counters["streams"] += 1
        self._transport.write(HEAD)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._pacing.first_token_s, self._tick, delta, ending, 0)

    def _tick(self, delta, ending, sent: int) -> None:  # type: ignore[no-untyped-def]
        if self._transport is None:
            return
        payload = delta(time.monotonic_ns(), sent == 0)
        sent += 1
        if sent == self._pacing.chunks:
            self._transport.write(_chunk(payload + ending(sent)) + b"0\r\n\r\n")
            self._busy = False
            self._timer = None
            self._next_request()
            return
        self._transport.write(_chunk(payload))
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._pacing.interval_s, self._tick, delta, ending, sent)


async def serve(host: str, pacing: Pacing, counters: dict[str, int]) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: StreamServer(pacing, counters), host, 0, backlog=8192, reuse_address=True
    )
