"""What a test can script on the simulated LLM upstream, and what it records.

Tests hand these frozen behaviours to ``SimulatedLLM.enqueue``; the server in
``tests.support.simulator`` consumes one per request, in order, whatever the route, and answers
normally once the queue is empty. ``RecordedRequest`` is what the server keeps of every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from multidict import CIMultiDict


@dataclass(frozen=True, slots=True)
class Respond:
    """Answer normally after ``latency_s`` more seconds, optionally with this exact text."""

    latency_s: float = 0.0
    content: str | None = None


@dataclass(frozen=True, slots=True)
class Delay:
    """Wait ``latency_s`` more seconds, then answer normally."""

    latency_s: float


@dataclass(frozen=True, slots=True)
class Fail:
    """Answer ``status`` with an error body in the route's API format.

    ``retry_after`` (seconds) becomes the ``retry-after`` header and the API's rate-limit reset
    header; ``headers`` are added as given.
    """

    status: int
    message: str | None = None
    retry_after: float | None = None
    headers: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Garbage:
    """Answer ``status`` with a body that is not the API's format."""

    status: int = 200
    body: bytes = b"<html>oops"
    content_type: str = "text/html"


@dataclass(frozen=True, slots=True)
class BreakStream:
    """Streaming: send ``after_chunks`` content chunks, then drop the connection mid-stream.

    Non-streaming: drop the connection without any answer.
    """

    after_chunks: int = 2


@dataclass(frozen=True, slots=True)
class FailStream:
    """Streaming: send ``after_chunks`` content chunks, then an error event in the API's format
    (OpenAI: a ``data: {"error": ...}`` chunk; Anthropic: ``event: error``) and end the stream
    without its normal ending, as providers do when they fail mid-answer.

    Non-streaming: the same as ``Fail(status, message)``.
    """

    after_chunks: int = 1
    status: int = 500
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Hang:
    """Never answer; the request ends only when the client goes away (counted as a disconnect)."""


Behaviour = Respond | Delay | Fail | FailStream | Garbage | BreakStream | Hang


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the simulator received it."""

    method: str
    path: str
    headers: CIMultiDict[str]
    json: Any
    received_at: float
    body: bytes = b""
