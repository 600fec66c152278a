"""Slow and stalled connections (slowloris) are cut within their bounds, over raw sockets.

Header time runs from a request's first byte to the end of its headers (then the connection
is closed: no request exists to answer); body time from the headers to the end of the body
(then 408 in the caller's format); an idle connection is closed after the keep-alive timeout.
"""

from __future__ import annotations

import asyncio
import socket

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import SimulatedLLM
from tests.support.waiting import wait_until

HEADER_S, BODY_S, KEEPALIVE_S = 0.3, 0.3, 0.6
SLACK_S = 1.0  # a loaded 2-core machine is late with timers; nothing here waits longer
BODY = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'


@pytest.fixture
async def bounded(llm: SimulatedLLM, sidecar_factory) -> SidecarHandle:
    return await sidecar_factory(
        policy(providers=[provider_for(llm)]),
        header_timeout_s=HEADER_S,
        body_timeout_s=BODY_S,
        keepalive_timeout_s=KEEPALIVE_S,
    )


async def _connect(sidecar: SidecarHandle) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", sidecar.running.data_port)


async def _closed_within(reader: asyncio.StreamReader, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(limit_s):
        data = await reader.read()
    return data, loop.time() - started


def _request(path: str, body: bytes, *, length: int | None = None, close: bool = False) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: sidecar\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body) if length is None else length}\r\n"
    head += "Connection: close\r\n" if close else ""
    return head.encode() + b"\r\n" + body


async def _read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One answer with a Content-Length: its status line and its body."""
    async with asyncio.timeout(SLACK_S + max(HEADER_S, BODY_S)):
        status_line = await reader.readline()
        length = 0
        while (line := await reader.readline()) != b"\r\n":
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status_line, await reader.readexactly(length)


async def _metric(sidecar: SidecarHandle, line: str) -> bool:
    return line in (await sidecar.metrics_text()).splitlines()


async def test_partial_headers_are_cut_after_the_header_timeout(bounded) -> None:
    reader, writer = await _connect(bounded)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: sidecar\r\nContent-Le")
    data, elapsed = await _closed_within(reader, HEADER_S + SLACK_S)
    writer.close()
    assert data == b"" and elapsed >= HEADER_S * 0.9
    assert await _metric(bounded, 'sluice_limits_hit_total{limit="header_time"} 1.0')
    assert await _metric(bounded, "llm_requests_in_flight 0.0")


async def test_trickled_headers_do_not_extend_the_header_timeout(bounded) -> None:
    reader, writer = await _connect(bounded)
    request = _request("/v1/chat/completions", BODY)

    async def trickle() -> None:
        for byte in request:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.02)  # the slow sender is the behaviour under test

    sender = asyncio.create_task(trickle())
    # Sending the whole request takes len(request) * 20 ms, about 4 s: a header timeout that
    # each byte extended would let it finish. Closed while the trickle still runs is the proof.
    data, _ = await _closed_within(reader, len(request) * 0.02)
    still_sending = not sender.done()
    sender.cancel()
    writer.close()
    assert data == b"" and still_sending


@pytest.mark.parametrize(
    ("path", "api"), [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic")]
)
async def test_unfinished_content_length_body_gets_408_in_the_callers_format(
    bounded, llm, path, api
) -> None:
    reader, writer = await _connect(bounded)
    writer.write(_request(path, BODY[:10], length=len(BODY), close=True))
    status_line, payload = await _read_answer(reader)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 408"), status_line
    error = orjson.loads(payload)
    if api == "anthropic":
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    else:
        assert error["error"]["code"] == "body_time_exceeded"
    assert llm.requests == []
    assert await _metric(bounded, "llm_requests_in_flight 0.0")
    assert await _metric(bounded, 'sluice_limits_hit_total{limit="body_time"} 1.0')


async def test_unfinished_chunked_body_gets_408(bounded) -> None:
    reader, writer = await _connect(bounded)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: sidecar\r\nConnection: close\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"mod\r\n'
    )
    async with asyncio.timeout(BODY_S + SLACK_S):
        status_line = await reader.readline()
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 408")
    assert await _metric(bounded, "llm_requests_in_flight 0.0")


async def test_idle_connections_are_closed_after_the_keepalive_timeout(bounded) -> None:
    reader, writer = await _connect(bounded)  # never sends anything
    data, elapsed = await _closed_within(reader, KEEPALIVE_S + SLACK_S)
    assert data == b"" and elapsed >= KEEPALIVE_S * 0.9
    writer.close()
    reader, writer = await _connect(bounded)  # one call, then idle on keep-alive
    writer.write(_request("/v1/chat/completions", BODY))
    async with asyncio.timeout(SLACK_S):
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    _, elapsed = await _closed_within(reader, KEEPALIVE_S + SLACK_S)
    writer.close()
    assert elapsed >= KEEPALIVE_S * 0.5


async def test_idle_time_between_calls_is_not_counted_as_header_time(bounded) -> None:
    reader, writer = await _connect(bounded)
    for _ in range(2):
        writer.write(_request("/v1/chat/completions", BODY))
        status_line, _ = await _read_answer(reader)
        assert status_line.startswith(b"HTTP/1.1 200")
        await asyncio.sleep(HEADER_S * 1.5)  # idle, but within the keep-alive timeout
        assert not reader.at_eof()
    writer.close()


async def test_a_refused_admin_call_does_not_leave_a_header_deadline_running(bounded) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", bounded.running.admin_port)
    writer.write(b"GET /admin/config HTTP/1.1\r\nHost: sidecar\r\n\r\n")  # no token: 401
    status_line, _ = await _read_answer(reader)
    assert status_line.startswith(b"HTTP/1.1 401")
    await asyncio.sleep(HEADER_S * 2)  # past the header deadline, within the keep-alive one
    assert not reader.at_eof()
    writer.close()
    assert not await _metric(bounded, 'sluice_limits_hit_total{limit="header_time"} 1.0')


ANSWER_TEXT_BYTES = 12 * 1024 * 1024  # more than loopback socket buffers absorb


async def _big_answer(request: web.Request) -> web.Response:
    await request.read()
    message = {"role": "assistant", "content": "x" * ANSWER_TEXT_BYTES}
    answer = {
        "id": "c",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    return web.json_response(answer)


async def test_a_caller_that_stops_reading_an_answer_is_cut_after_the_send_timeout(
    sidecar_factory,
) -> None:
    upstream = web.Application()
    upstream.router.add_post("/v1/chat/completions", _big_answer)
    server = TestServer(upstream)
    await server.start_server()
    try:
        provider = {
            "name": "big",
            "type": "openai-compatible",
            "baseUrl": str(server.make_url("/v1")),
        }
        sidecar = await sidecar_factory(
            policy(providers=[provider]), send_timeout_s=0.5, max_answer_bytes=64 * 1024 * 1024
        )
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a reader that never reads
        client.setblocking(False)
        await asyncio.get_running_loop().sock_connect(
            client, ("127.0.0.1", sidecar.running.data_port)
        )
        client.send(_request("/v1/chat/completions", BODY))
        registry = sidecar.state.metrics.registry
        sample = ("sluice_limits_hit_total", {"limit": "send_time"})
        await wait_until(lambda: registry.get_sample_value(*sample) == 1)
        assert await _metric(sidecar, "llm_requests_in_flight 0.0")
        client.close()
    finally:
        await server.close()


async def test_a_trickled_body_gets_408_within_the_body_timeout(bounded) -> None:
    reader, writer = await _connect(bounded)
    writer.write(_request("/v1/chat/completions", b"", length=10_000, close=True))

    async def trickle() -> None:
        while True:
            writer.write(b" ")
            await asyncio.sleep(0.02)  # the slow sender is the behaviour under test

    sender = asyncio.create_task(trickle())
    try:
        status_line, _ = await _read_answer(reader)
    finally:
        sender.cancel()
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 408")
    assert await _metric(bounded, "llm_requests_in_flight 0.0")
