"""What every upstream transport must do, against real servers on loopback.

Parametrised over ``TRANSPORTS``: a new transport (another HTTP client) is added there and must
pass all of it before it can be the default. Each test drives ``send(request) -> reply`` alone,
with no pipeline, so a failure names the transport's behaviour, not a stage's.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from sluice_sidecar.errors import PermanentUpstreamError, TransientUpstreamError
from sluice_sidecar.transports.base import UpstreamReply, UpstreamRequest
from sluice_sidecar.transports.http import HttpTransport
from tests.transports.upstreams import (
    SSE_END,
    SSE_FIRST,
    SSE_NEXT,
    ConnectProxy,
    StaleServer,
    Upstream,
)

TRANSPORTS: dict[str, Callable[..., Any]] = {"aiohttp": HttpTransport}
MiB = 1024 * 1024
EVENT_WITHIN_S = 5.0  # bounds waits for what must happen at once; never reached when it does

Factory = Callable[..., Awaitable[Any]]


@pytest.fixture(params=sorted(TRANSPORTS))
async def make_transport(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """``await make_transport(**options)``: a started transport, closed at teardown."""
    made = []

    async def make(**options: Any) -> Any:
        transport = TRANSPORTS[request.param](**options)
        await transport.start()
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.close()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    await server.start()
    yield server
    await server.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
async def tls_upstream(ca: trustme.CA) -> AsyncIterator[Upstream]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    server = Upstream(tls=context)
    await server.start()
    yield server
    await server.close()


def post(url: str, body: bytes = b"{}", *, stream: bool = False) -> UpstreamRequest:
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-conformance"}
    return UpstreamRequest("POST", url, headers, body, stream, secrets=("Bearer sk-conformance",))


async def test_content_length_and_chunked_answers_are_read_whole(
    make_transport: Factory, upstream: Upstream
) -> None:
    transport = await make_transport()
    plain = await transport.send(post(upstream.url + "/json", b'{"q": 1}'))
    chunked = await transport.send(post(upstream.url + "/chunked"))
    assert plain.status == 200 and plain.json == {"ok": True, "received": 8}
    assert chunked.json == {"ok": True}
    assert "transfer-encoding" not in chunked.headers and "content-length" not in plain.headers


async def test_gzip_is_asked_for_and_answers_come_decompressed(
    make_transport: Factory, upstream: Upstream
) -> None:
    transport = await make_transport()
    reply = await transport.send(post(upstream.url + "/gzip"))
    assert reply.json == {"ok": True, "compressed": True}
    assert reply.body == b'{"ok": true, "compressed": true}'
    assert "content-encoding" not in reply.headers  # relayed as the plain bytes it now is
    assert "gzip" in upstream.seen.accept_encoding[0]


async def test_keep_alive_reuses_one_connection(
    make_transport: Factory, upstream: Upstream
) -> None:
    transport = await make_transport()
    for _ in range(3):
        await transport.send(post(upstream.url + "/json"))
    assert len(set(upstream.seen.peers)) == 1


async def test_a_stale_keep_alive_connection_fails_retryably_and_is_not_reused(
    make_transport: Factory,
) -> None:
    """The upstream closed a pooled connection as the next request went out.

    Not sent again by the transport (the provider may have processed it): a transient error,
    which the retry stage sends again, counts and charges; the next call gets a new connection.
    """
    server = StaleServer()
    await server.start()
    try:
        transport = await make_transport()
        assert (await transport.send(post(server.url + "/json"))).json == {"ok": True}
        with pytest.raises(TransientUpstreamError) as raised:
            await transport.send(post(server.url + "/json"))
        assert raised.value.reason == "connection error"
        assert (await transport.send(post(server.url + "/json"))).json == {"ok": True}
        assert (server.connections, server.answered) == (2, 2)
    finally:
        await server.close()


async def test_a_streams_first_event_comes_back_before_the_rest_is_sent(
    make_transport: Factory, upstream: Upstream
) -> None:
    """No read buffer holds a stream back: each event is handed on as it arrives."""
    transport = await make_transport()
    reply: UpstreamReply = await asyncio.wait_for(
        transport.send(post(upstream.url + "/sse", stream=True)), EVENT_WITHIN_S
    )
    try:
        assert reply.first_chunk == SSE_FIRST
        assert reply.chunks is not None
        await upstream.sse_steps.put(SSE_NEXT)
        assert await asyncio.wait_for(anext(reply.chunks), EVENT_WITHIN_S) == SSE_NEXT
        await upstream.sse_steps.put(SSE_END)
        rest = [chunk async for chunk in reply.chunks]
        assert b"".join(rest) == SSE_END
    finally:
        reply.close()


async def test_large_bodies_go_and_come_whole(make_transport: Factory, upstream: Upstream) -> None:
    transport = await make_transport()
    upstream.large_bytes = 8 * MiB
    reply = await transport.send(post(upstream.url + "/large", b"{" + b" " * (8 * MiB) + b"}"))
    assert upstream.seen.bodies == [8 * MiB + 2]
    assert len(reply.body) == 8 * MiB and reply.json["fill"][:3] == "xxx"


async def test_an_answer_past_the_size_limit_is_refused(
    make_transport: Factory, upstream: Upstream
) -> None:
    transport = await make_transport(max_answer_bytes=MiB)
    upstream.large_bytes = 2 * MiB
    with pytest.raises(PermanentUpstreamError, match="exceeds the sidecar's limit"):
        await transport.send(post(upstream.url + "/large"))


@pytest.fixture
def unanswered_address() -> Iterator[tuple[str, int]]:
    """A listening socket whose accept queue is full: a new connection attempt hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        fillers = []
        for _ in range(4):  # fill the queue (its size is backlog + 1 on Linux)
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)
        yield listener.getsockname()
        for filler in fillers:
            filler.close()


async def test_a_connection_that_cannot_be_made_fails_after_the_connect_timeout(
    make_transport: Factory, unanswered_address: tuple[str, int]
) -> None:
    transport = await make_transport(connect_timeout_s=0.2)
    host, port = unanswered_address
    async with asyncio.timeout(EVENT_WITHIN_S):
        with pytest.raises(TransientUpstreamError) as raised:
            await transport.send(post(f"http://{host}:{port}/json"))
    assert raised.value.reason == "connection error"


async def test_a_silent_upstream_is_cut_by_the_deadline_and_its_connection_closed(
    make_transport: Factory, upstream: Upstream
) -> None:
    transport = await make_transport()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await transport.send(post(upstream.url + "/hang"))
    await asyncio.wait_for(upstream.seen.disconnected.wait(), EVENT_WITHIN_S)


async def test_a_stream_silent_past_the_idle_limit_is_broken(
    make_transport: Factory, upstream: Upstream
) -> None:
    transport = await make_transport(stream_idle_timeout_s=0.2)
    reply = await transport.send(post(upstream.url + "/sse", stream=True))
    try:
        assert reply.chunks is not None
        with pytest.raises(TransientUpstreamError) as raised:
            await asyncio.wait_for(anext(reply.chunks), EVENT_WITHIN_S)
        assert raised.value.reason == "stream idle"
    finally:
        reply.close()


async def test_a_slow_reader_of_a_steady_stream_is_not_cut_by_the_idle_limit(
    make_transport: Factory, upstream: Upstream
) -> None:
    """Silence is the upstream's, counted while a chunk is awaited: a caller slower than the
    idle limit, reading chunks already received, keeps its stream."""
    transport = await make_transport(stream_idle_timeout_s=0.2)
    reply = await transport.send(post(upstream.url + "/sse", stream=True))
    try:
        assert reply.chunks is not None
        await upstream.sse_steps.put(SSE_NEXT)
        await upstream.sse_steps.put(SSE_END)
        await asyncio.sleep(0.5)  # the slow caller itself: there is nothing to await
        rest = [chunk async for chunk in reply.chunks]
        assert b"".join(rest) == SSE_NEXT + SSE_END
    finally:
        reply.close()


async def test_the_upstream_gets_the_callers_user_agent_and_never_the_transports(
    make_transport: Factory, upstream: Upstream
) -> None:
    transport = await make_transport()
    await transport.send(post(upstream.url + "/json"))
    request = post(upstream.url + "/json")
    request.headers["user-agent"] = "AsyncOpenAI/Python 1.0"
    await transport.send(request)
    assert upstream.seen.user_agents == [None, "AsyncOpenAI/Python 1.0"]


async def test_a_stream_closed_mid_way_closes_its_upstream_connection(
    make_transport: Factory, upstream: Upstream
) -> None:
    """A caller that goes away must stop the provider's generation (and its billing)."""
    transport = await make_transport()
    reply = await transport.send(post(upstream.url + "/sse", stream=True))
    reply.close()
    await asyncio.wait_for(upstream.seen.disconnected.wait(), EVENT_WITHIN_S)


async def test_tls_to_an_upstream_signed_by_a_trusted_local_ca(
    make_transport: Factory,
    tls_upstream: Upstream,
    ca_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``SSL_CERT_FILE`` names the CA bundle (a corporate CA), read when the transport starts."""
    untrusting = await make_transport()
    with pytest.raises(TransientUpstreamError, match=r"(?i)certificate"):
        await untrusting.send(post(tls_upstream.url + "/json"))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    transport = await make_transport()
    reply = await transport.send(post(tls_upstream.url + "/json"))
    assert reply.json == {"ok": True, "received": 2}


async def test_https_through_the_proxy_named_by_https_proxy(
    make_transport: Factory,
    tls_upstream: Upstream,
    ca_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = ConnectProxy()
    await proxy.start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        transport = await make_transport()
        reply = await transport.send(post(tls_upstream.url + "/json"))
        assert reply.json == {"ok": True, "received": 2}
        assert proxy.tunnels == [tls_upstream.url.removeprefix("https://")]
    finally:
        await proxy.close()
