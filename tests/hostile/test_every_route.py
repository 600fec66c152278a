"""Every hostile behaviour against every API route, streaming and not.

Whatever the upstream does, the caller gets an answer within the operation's deadline: the
answer itself, or an error in its own API format (a 4xx/5xx JSON error, or, once a stream has
started, a final error event), never a 500; no provider key in the answer or in the log; and
every connection closed afterwards (file descriptors back to their level).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from tests.hostile.conftest import leaked, open_fds, start_hostile_sidecar
from tests.support.hostile_upstream import BEHAVIOUR_HEADER, BEHAVIOURS, HostileUpstream
from tests.support.sidecar import SidecarHandle, close_test_sidecar
from tests.support.waiting import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

DEADLINE_S = 0.4
SLACK_S = 0.6  # the 504 is answered at the deadline; this covers a busy machine, not a hang
MESSAGES = [{"role": "user", "content": "Hello"}]


@dataclass(frozen=True)
class Route:
    name: str
    path: str
    body: dict[str, Any]
    stream: bool = False

    @property
    def anthropic(self) -> bool:
        return self.path == "/v1/messages"


def _routes() -> list[Route]:
    chat = {"model": "m", "messages": MESSAGES, "max_tokens": 5}
    completions = {"model": "m", "prompt": "Hello", "max_tokens": 5}
    messages = {"model": "m", "messages": MESSAGES, "max_tokens": 5}
    routes = [Route("embeddings", "/v1/embeddings", {"model": "m", "input": "Hello"})]
    for name, path, body in [
        ("chat", "/v1/chat/completions", chat),
        ("completions", "/v1/completions", completions),
        ("messages", "/v1/messages", messages),
    ]:
        routes += [Route(name, path, body), Route(f"{name}-stream", path, body, stream=True)]
    return routes


ROUTES = _routes()
STALLS = frozenset({"stall", "stall-mid-body", "trickle"})
# Reading (or inflating) 32 MiB may outlast a short deadline on a busy machine: either is fine.
TOO_LARGE = frozenset({"huge-body", "gzip-bomb"})
# Once a stream's first event reached the caller, a failure can only end it with an error event.
STARTED_STREAM_FAILURES = frozenset({"stall-mid-body", "trickle", "stream-cut"})


def expected(behaviour: str, route: Route) -> int | str:
    """The status the caller must get, or "answer" / "error event" for a 200 stream or body."""
    if behaviour == "ok" or (behaviour == "json-to-stream" and not route.stream):
        return "answer"
    if behaviour == "malformed-answer" and not route.stream:
        return "answer"  # valid JSON is relayed as it came: the caller's SDK judges its shape
    if route.stream and behaviour in STARTED_STREAM_FAILURES:
        return "error event"
    if behaviour in STALLS:
        return 504
    if behaviour == "error-echoes-key":
        return 401
    if behaviour[:3] in ("429", "503"):
        return int(behaviour[:3])
    return "502 or 504" if behaviour in TOO_LARGE and not route.stream else 502


def check_error_document(document: Any, route: Route) -> None:
    """An error in the caller's own API format."""
    if route.anthropic:
        assert document["type"] == "error"
        error = document["error"]
    else:
        error = document["error"]
        assert isinstance(error.get("type"), str) or "code" in error
    assert isinstance(error["message"], str) and error["message"]


def last_event(body: bytes) -> tuple[str | None, Any]:
    events = [e for e in body.replace(b"\r\n", b"\n").split(b"\n\n") if e.strip()]
    name = None
    data = []
    for line in events[-1].split(b"\n"):
        if line.startswith(b"event:"):
            name = line[6:].strip().decode()
        elif line.startswith(b"data:"):
            data.append(line[5:].strip())
    payload = b"\n".join(data)
    return name, payload if payload == b"[DONE]" else orjson.loads(payload)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sidecar(
    hostile: HostileUpstream, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SidecarHandle]:
    handle = await start_hostile_sidecar(
        hostile, tmp_path_factory.mktemp("secrets"), defaults={"timeoutSeconds": DEADLINE_S}
    )
    yield handle
    await close_test_sidecar(handle)


@pytest_asyncio.fixture(loop_scope="module")
async def settled_fds(hostile: HostileUpstream, sidecar: SidecarHandle) -> AsyncIterator[None]:
    """Fail the test unless every descriptor it opened is closed again."""
    await wait_until(lambda: hostile.open_connections == 0)
    before = open_fds()
    yield
    await wait_until(lambda: hostile.open_connections == 0 and open_fds() <= before)


@pytest.mark.parametrize("route", ROUTES, ids=[r.name for r in ROUTES])
@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
@pytest.mark.usefixtures("settled_fds")
async def test_hostile_upstream_gets_a_prompt_answer_in_the_callers_format(
    sidecar: SidecarHandle,
    caplog: pytest.LogCaptureFixture,
    behaviour: str,
    route: Route,
) -> None:
    caplog.set_level(logging.DEBUG, "sluice")
    headers = {BEHAVIOUR_HEADER: behaviour, "authorization": "Bearer sk-app-0000"}
    if route.anthropic:
        headers |= {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-app-0000"}
    body = route.body | ({"stream": True} if route.stream else {})
    loop = asyncio.get_running_loop()
    started = loop.time()
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as client,
        client.post(sidecar.anthropic_url + route.path, json=body, headers=headers) as response,
    ):
        answer = await response.read()
        status = response.status
    assert loop.time() - started < DEADLINE_S + SLACK_S
    assert leaked(answer.decode("utf-8", "replace")) == []
    assert leaked(caplog.text) == []

    outcome = expected(behaviour, route)
    if outcome == "answer":
        assert status == 200
        if route.stream:
            name, data = last_event(answer)
            assert data == b"[DONE]" or data["type"] == "message_stop", answer[-200:]
        else:
            assert isinstance(orjson.loads(answer), dict)
    elif outcome == "error event":
        assert status == 200
        name, data = last_event(answer)
        assert name == ("error" if route.anthropic else None)
        check_error_document(data, route)
    else:
        assert status in ((502, 504) if outcome == "502 or 504" else (outcome,)), answer[:300]
        check_error_document(orjson.loads(answer), route)
