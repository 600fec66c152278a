"""Upstream answers are bounded: size (decompressed), and a stream's silence between chunks."""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest
import pytest_asyncio

from sluice_sidecar.errors import PermanentUpstreamError, TransientUpstreamError
from sluice_sidecar.transports.base import UpstreamRequest
from sluice_sidecar.transports.http import (
    DEFAULT_MAX_ANSWER_BYTES,
    MAX_DETAIL_CHARS,
    HttpTransport,
)
from tests.hostile.conftest import (
    DEADLINE_S,
    MESSAGES,
    error_from_own_sidecar,
    sdk_call,
    start_hostile_sidecar,
)
from tests.support.hostile_upstream import BEHAVIOUR_HEADER, BOMB_BYTES, HostileUpstream
from tests.support.sidecar import SidecarHandle, close_test_sidecar

pytestmark = pytest.mark.asyncio(loop_scope="module")

LIMIT = 1024 * 1024
IDLE_S = 0.2
BODY = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true}'


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def transport() -> AsyncIterator[HttpTransport]:
    transport = HttpTransport(max_answer_bytes=LIMIT, stream_idle_timeout_s=IDLE_S)
    await transport.start()
    yield transport
    await transport.close()


def request(upstream: HostileUpstream, behaviour: str, *, stream: bool) -> UpstreamRequest:
    body = BODY if stream else BODY.replace(b"true", b"false")
    return UpstreamRequest(
        method="POST",
        url=upstream.openai_base_url + "/chat/completions",
        headers={BEHAVIOUR_HEADER: behaviour, "content-type": "application/json"},
        body=body,
        stream=stream,
    )


@pytest.mark.parametrize("behaviour", ["huge-body", "gzip-bomb"])
async def test_an_answer_past_the_limit_is_refused_as_502(
    transport: HttpTransport, hostile: HostileUpstream, behaviour: str
) -> None:
    with pytest.raises(
        PermanentUpstreamError, match=f"exceeds the sidecar's limit of {LIMIT}"
    ) as caught:
        await transport.send(request(hostile, behaviour, stream=False))
    assert caught.value.status == 502 and caught.value.reason == "answer too large"


async def test_a_gzip_bomb_through_the_sidecar_is_a_502_without_inflating_memory(
    hostile_sidecar: SidecarHandle,
) -> None:
    async def bomb() -> None:
        with pytest.raises(openai.APIStatusError, match="exceeds the sidecar's limit") as caught:
            await sdk_call(hostile_sidecar, "openai", "gzip-bomb")
        assert caught.value.status_code == 502
        assert caught.value.response.json()["error"]["code"] == "upstream_error"

    peak_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    await bomb()
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before_kib) / 1024
    assert grown_mib < BOMB_BYTES / 1024 / 1024 / 3  # the default limit (32 MiB), not the bomb
    # What was read up to the limit is freed at once, not when the cycle collector gets to
    # the error's traceback: with the collector off, more bombs still do not add up. Python's
    # own allocations are counted (tracemalloc); the process RSS depends on the allocator.
    gc.disable()
    tracemalloc.start()
    try:
        await bomb()
        settled = tracemalloc.get_traced_memory()[0]
        await bomb()
        await bomb()
        grown = tracemalloc.get_traced_memory()[0] - settled
    finally:
        tracemalloc.stop()
        gc.enable()
    assert grown < DEFAULT_MAX_ANSWER_BYTES / 4


async def test_a_stalled_stream_ends_with_an_error_after_the_idle_limit(
    transport: HttpTransport, hostile: HostileUpstream
) -> None:
    reply = await transport.send(request(hostile, "stall-mid-body", stream=True))
    assert reply.first_chunk.startswith(b"data: ")
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        assert reply.chunks is not None
        with pytest.raises(TransientUpstreamError, match=f"sent nothing for {IDLE_S:g}s"):
            async for _chunk in reply.chunks:
                pass
    finally:
        reply.close()
    assert IDLE_S <= loop.time() - started < IDLE_S + 0.5


async def test_a_trickling_stream_is_not_idle(
    transport: HttpTransport, hostile: HostileUpstream
) -> None:
    """Bytes every few milliseconds keep a stream alive past the idle limit."""
    reply = await transport.send(request(hostile, "trickle", stream=True))
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        assert reply.chunks is not None
        async for _chunk in reply.chunks:
            if loop.time() - started > 2 * IDLE_S:
                break
    finally:
        reply.close()


async def read_stream(client: openai.AsyncOpenAI, behaviour: str) -> None:
    """Read one streamed chat answer to its end, asking the upstream for ``behaviour``."""
    stream = await client.chat.completions.create(
        model="m", messages=MESSAGES, stream=True, extra_headers={BEHAVIOUR_HEADER: behaviour}
    )
    async for _chunk in stream:
        pass


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [("stall-mid-body", "timed out"), ("stream-cut", "ended without its final event")],
)
async def test_a_broken_stream_through_the_sidecar_ends_with_an_error_event(
    hostile_sidecar: SidecarHandle, behaviour: str, message: str
) -> None:
    async with openai.AsyncOpenAI(
        base_url=hostile_sidecar.openai_url, api_key="sk-app", max_retries=0
    ) as client:
        with pytest.raises(openai.APIError, match=message):
            await read_stream(client, behaviour)


async def test_redirects_are_not_followed(
    transport: HttpTransport, hostile: HostileUpstream
) -> None:
    with pytest.raises(PermanentUpstreamError, match=r"redirect \(307\) to http") as caught:
        await transport.send(request(hostile, "redirect", stream=False))
    assert caught.value.status == 502 and caught.value.upstream_status is None
    assert not [r for r in hostile.requests if r.path.startswith("/elsewhere")]


async def test_a_long_provider_error_message_is_cut_in_our_messages_and_logs(
    hostile: HostileUpstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "sluice")
    error = await error_from_own_sidecar(hostile, tmp_path, "long-error", openai_providers=2)
    assert error.status_code == 503
    assert len(error.response.content) > 30_000  # the provider's own body, relayed whole
    fallback = [r.getMessage() for r in caplog.records if r.name == "sluice.fallback"]
    assert fallback and all(len(line) < MAX_DETAIL_CHARS + 200 for line in fallback)


async def test_an_error_body_over_the_limit_is_not_relayed_cut(
    hostile_sidecar: SidecarHandle,
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk_call(hostile_sidecar, "openai", "huge-error")
    assert caught.value.status_code == 503
    error = caught.value.response.json()["error"]  # the sidecar's own, in the caller's format
    assert error["message"] == "upstream answered 503: Service Unavailable"


async def test_an_error_body_arriving_in_pieces_is_relayed_whole(
    hostile_sidecar: SidecarHandle,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk_call(hostile_sidecar, "openai", "error-in-pieces")
    assert caught.value.response.json()["error"]["message"] == "bad request " * 100


async def test_a_stalled_stream_ends_at_the_idle_limit_before_the_deadline(
    hostile: HostileUpstream, tmp_path: Path
) -> None:
    sidecar = await start_hostile_sidecar(
        hostile, tmp_path, settings={"stream_idle_timeout_s": IDLE_S, "max_answer_bytes": LIMIT}
    )
    loop = asyncio.get_running_loop()
    try:
        async with openai.AsyncOpenAI(
            base_url=sidecar.openai_url, api_key="sk-app", max_retries=0
        ) as client:
            started = loop.time()
            with pytest.raises(openai.APIError, match=f"sent nothing for {IDLE_S:g}s"):
                await read_stream(client, "stall-mid-body")
            assert loop.time() - started < DEADLINE_S / 2  # the idle limit, not the deadline
            with pytest.raises(openai.APIStatusError, match=f"limit of {LIMIT} bytes"):
                await client.chat.completions.create(
                    model="m", messages=MESSAGES, extra_headers={BEHAVIOUR_HEADER: "huge-body"}
                )
    finally:
        await close_test_sidecar(sidecar)
