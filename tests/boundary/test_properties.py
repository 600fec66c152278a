"""Property tests of the request boundary: whatever a caller sends, a proxied call or a 4xx.

The data app (``proxy.build_data_app``) runs in process on a real ``SidecarState`` in front of
the simulated provider, on a private event loop that each synchronous hypothesis example drives.
Bodies go through aiohttp's ``TestClient``; raw header bytes go over a socket to the same state
served by the sidecar's own listener (``start_test_sidecar``), so aiohttp's HTTP parser and the
sidecar's protocol-error answers are part of what is tested. Example counts are bounded
(``MAX_EXAMPLES`` per property) to keep the module within a few seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice_sidecar.api.proxy import build_data_app
from tests.support.sidecar import (
    SidecarHandle,
    close_test_sidecar,
    compile_policy,
    policy,
    provider_for,
    start_test_sidecar,
)
from tests.support.simulator import SimulatedLLM

MAX_EXAMPLES = 400
SIDECAR_BUG = b"internal error in the Sluice sidecar"
T = TypeVar("T")
ROUTES = [
    ("openai", "/v1/chat/completions"),
    ("openai", "/v1/completions"),
    ("openai", "/v1/embeddings"),
    ("anthropic", "/v1/messages"),
]
bounded = settings(
    max_examples=MAX_EXAMPLES, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@dataclass
class Boundary:
    loop: asyncio.AbstractEventLoop
    client: TestClient
    sidecar: SidecarHandle
    llm: SimulatedLLM
    examples: int = 0

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        self.examples += 1
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, 10))


@pytest.fixture(scope="module")
def boundary() -> Iterator[Boundary]:
    loop = asyncio.new_event_loop()

    async def start() -> Boundary:
        llm = SimulatedLLM()
        await llm.start()
        document = policy(
            providers=[provider_for(llm)],
            retry={"maxAttempts": 1},
            # The simulator answers some odd fields with its own 500: no breaker may open on them.
            circuitBreaker={"enabled": False},
            cache={"enabled": True},
            pricing={"m": {"inputPer1M": 1, "outputPer1M": 1}},
        )
        sidecar = await start_test_sidecar(compile_policy(document))
        client = TestClient(TestServer(build_data_app(sidecar.state)))
        await client.start_server()
        return Boundary(loop, client, sidecar, llm)

    started = loop.run_until_complete(start())
    yield started
    print(f"\nboundary properties: {started.examples} examples")

    async def stop() -> None:
        await started.client.close()
        await close_test_sidecar(started.sidecar)
        await started.llm.close()

    loop.run_until_complete(stop())
    loop.close()


def assert_acceptable(api: str, status: int, payload: bytes, *, reached: bool) -> None:
    """A proxied answer (the provider's own, whatever its status: the simulator answers some
    odd fields with its own 500), or a 4xx error in the caller's format; never a 5xx of ours."""
    assert SIDECAR_BUG not in payload, payload[:300]
    if reached and status >= 500:
        return  # the provider's answer, relayed
    assert status < 500, (status, payload[:300])
    if status < 400:
        return
    error = orjson.loads(payload)
    if api == "anthropic":
        assert error["type"] == "error" and isinstance(error["error"]["message"], str), error
    else:
        assert isinstance(error["error"]["message"], str) and "type" in error["error"], error


async def post(boundary: Boundary, path: str, body: bytes, headers: dict[str, str]) -> tuple:
    """Status, body, and whether the call reached the provider."""
    before = len(boundary.llm.requests)
    async with boundary.client.post(path, data=body, headers=headers) as response:
        payload = await response.read()
    return response.status, payload, len(boundary.llm.requests) > before


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
# Values the request fields are read as: the well-known ones with arbitrary JSON in them.
FIELDS = ["messages", "prompt", "input", "max_tokens", "temperature", "stream", "tools", "n"]
request_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["m", "gpt-4o"]) | st.text(max_size=300) | json_values},
    optional={name: json_values for name in FIELDS},
)


@bounded
@given(route=st.sampled_from(ROUTES), body=st.binary(max_size=2048))
def test_arbitrary_bytes_as_a_body(boundary: Boundary, route: tuple, body: bytes) -> None:
    api, path = route
    status, payload, reached = boundary.run(
        post(boundary, path, body, {"anthropic-version": "2023-06-01"})
    )
    assert_acceptable(api, status, payload, reached=reached)


@bounded
@given(route=st.sampled_from(ROUTES), value=json_values | request_bodies)
def test_arbitrary_json_as_a_body(boundary: Boundary, route: tuple, value: Any) -> None:
    """Any JSON value, and objects whose well-known fields hold any JSON value."""
    api, path = route
    status, payload, reached = boundary.run(post(boundary, path, orjson.dumps(value), {}))
    assert_acceptable(api, status, payload, reached=reached)


HEADERS = [
    "x-llm-operation",
    "x-llm-session",
    "x-llm-priority",
    "x-llm-cache",
    "content-type",
    "authorization",
    "anthropic-version",
    "cache-control",
]
# Raw header bytes: anything but the line breaks that end a header, and at most a few KiB.
header_bytes = st.binary(max_size=400).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b""))


async def raw_post(port: int, path: str, headers: dict[str, bytes]) -> tuple[int, bytes]:
    body = b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}'
    lines = b"".join(name.encode() + b": " + value + b"\r\n" for name, value in headers.items())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST "
        + path.encode()
        + b" HTTP/1.1\r\nHost: sidecar\r\nConnection: close\r\n"
        + lines
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    answer = await reader.read()
    writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        payload = _unchunk(payload)
    return int(head.split(b" ", 2)[1]), payload


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, data = out + rest[:size], rest[size + 2 :]
    return out


@bounded
@given(
    route=st.sampled_from(ROUTES),
    headers=st.dictionaries(st.sampled_from(HEADERS), header_bytes, min_size=1, max_size=4),
)
def test_arbitrary_header_values(boundary: Boundary, route: tuple, headers: dict) -> None:
    api, path = route
    port = boundary.sidecar.running.data_port
    before = len(boundary.llm.requests)
    status, payload = boundary.run(raw_post(port, path, headers))
    if b'"malformed_http"' in payload:  # aiohttp could not parse it: no route, OpenAI format
        api = "openai"
    assert_acceptable(api, status, payload, reached=len(boundary.llm.requests) > before)
