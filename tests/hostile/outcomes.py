"""What a caller must get back from a hostile upstream, per behaviour and route.

``expected`` is the table the hostile suites check against; ``check_answer`` checks one answer:
the answer itself, an error status with an error document in the caller's API format, or (a
stream that had started) a 200 ending with an error event in that format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from tests.hostile.conftest import MESSAGES
from tests.support.hostile_upstream import BEHAVIOUR_HEADER
from tests.support.sidecar import SidecarHandle


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
# A good answer however it is wrapped: 1xx interim answers before it are skipped.
GOOD = frozenset({"ok", "informational-first", "binary-header"})
# Answers that never end, which the deadline ends (a chunked JSON answer needs its last chunk).
STALLS = frozenset({"stall", "stall-mid-body", "trickle", "stall-after-end"})
# Reading (or inflating) 32 MiB may outlast a short deadline on a busy machine: either is fine.
TOO_LARGE = frozenset({"huge-body", "gzip-bomb"})
# Once a stream's first event reached the caller, a failure can only end it with an error event.
STARTED_STREAM_FAILURES = frozenset({"stall-mid-body", "trickle", "stream-cut"})


def expected(behaviour: str, route: Route) -> int | str:
    """The status the caller must get, or "answer" / "error event" for a 200 stream or body."""
    if behaviour in GOOD or (behaviour == "json-to-stream" and not route.stream):
        return "answer"
    if behaviour == "stall-after-end" and route.stream:
        return "answer"
    if behaviour == "malformed-answer" and not route.stream:
        return "answer"  # valid JSON is relayed as it came: the caller's SDK judges its shape
    if route.stream and behaviour in STARTED_STREAM_FAILURES:
        return "error event"
    if behaviour in STALLS:
        return 504
    if behaviour == "error-echoes-key":
        return 401
    if behaviour in ("long-error", "huge-error"):
        return 503
    if behaviour == "error-in-pieces":
        return 400
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


async def call_route(
    sidecar: SidecarHandle, route: Route, behaviour: str, **body: Any
) -> tuple[int, bytes]:
    """(status, body) of one call on its own connection, asking the upstream for ``behaviour``."""
    headers = {BEHAVIOUR_HEADER: behaviour, "authorization": "Bearer sk-app-0000"}
    if route.anthropic:
        headers |= {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-app-0000"}
    document = route.body | ({"stream": True} if route.stream else {}) | body
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as client,
        client.post(sidecar.anthropic_url + route.path, json=document, headers=headers) as response,
    ):
        return response.status, await response.read()


def check_answer(behaviour: str, route: Route, status: int, answer: bytes) -> None:
    outcome = expected(behaviour, route)
    if outcome == "answer":
        assert status == 200
        if route.stream:
            _name, data = last_event(answer)
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
