"""Deterministic text, token counts and embeddings shared by the simulator's API dialects.

``simulator_openai`` and ``simulator_anthropic`` build their wire formats from these; the server
in ``tests.support.simulator`` only routes. Everything here is a pure function of the request,
so tests can predict answers and token counts exactly.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import random
import re
import struct
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

DEFAULT_MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "text-embedding-3-small",
    "claude-haiku-4-5",
    "claude-sonnet-4-6",
)
ANSWER_PREFIX_WORDS = 8
EMBEDDING_DIMENSIONS = 8
_PIECE = re.compile(r"\s*\S+|\s+$")


@dataclass(frozen=True, slots=True)
class Env:
    """What a route needs from the server to build one answer."""

    name: str
    chunks: int
    seq: int
    created: int
    content: str | None = None
    models: tuple[str, ...] = DEFAULT_MODELS
    allowed: frozenset[str] | None = None  # None: any model is served


@dataclass(frozen=True, slots=True)
class Problem:
    """A request the real API would refuse: status, message and the offending parameter."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """An SSE answer: frames before the content, one frame per content chunk, frames after."""

    head: list[bytes]
    content: list[bytes]
    tail: list[bytes]


@dataclass(frozen=True, slots=True)
class Generation:
    """The simulated model's output for one prompt."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    truncated: bool

    def pieces(self, chunks: int) -> list[str]:
        """Split the text into at most ``chunks`` pieces whose concatenation is the text."""
        parts = _PIECE.findall(self.text)
        if not parts:
            return [self.text]
        n = max(1, min(chunks, len(parts)))
        size, extra = divmod(len(parts), n)
        out, start = [], 0
        for i in range(n):
            end = start + size + (1 if i < extra else 0)
            out.append("".join(parts[start:end]))
            start = end
        return out


class Route(Protocol):
    """One API endpoint: validation, the JSON answer, the SSE answer, and its error format."""

    def check(self, body: Any, env: Env) -> Problem | None: ...
    def answer(self, body: Any, env: Env) -> dict[str, Any]: ...
    def stream(self, body: Any, env: Env) -> StreamPlan: ...
    def error_body(self, problem: Problem) -> dict[str, Any]: ...
    def error_headers(self, status: int, retry_after: float | None) -> dict[str, str]: ...
    def renew(self, answer: dict[str, Any], env: Env) -> dict[str, Any]: ...
    def stream_error(self, problem: Problem) -> bytes: ...


def renew(answer: dict[str, Any], env: Env, id_format: str | None) -> dict[str, Any]:
    """A remembered answer with this request's id and timestamp (nested parts are shared)."""
    fresh = dict(answer)
    if id_format is not None:
        fresh["id"] = id_format.format(env.seq)
    if "created" in fresh:
        fresh["created"] = env.created
    return fresh


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def content_text(content: Any) -> str:
    """Text of a message's content: a string or a list of parts (only text parts count)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def count_words(*texts: str) -> int:
    """Prompt tokens: words across all texts, at least 1."""
    return max(1, sum(len(text.split()) for text in texts))


def generate(env: Env, question: str, prompt_tokens: int, max_tokens: Any) -> Generation:
    """The deterministic answer to ``question``, truncated to ``max_tokens`` words."""
    if env.content is not None:
        text = env.content
    else:
        head = " ".join(question.split()[:ANSWER_PREFIX_WORDS])
        text = f"Simulated answer from {env.name} to: {head}"
    words = text.split()
    truncated = isinstance(max_tokens, int) and 0 <= max_tokens < len(words)
    if truncated:
        words = words[:max_tokens]
        text = " ".join(words)
    return Generation(text, prompt_tokens, len(words), truncated)


@functools.lru_cache(maxsize=4096)
def embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> tuple[float, ...]:
    """A unit vector derived from a hash of the input: equal inputs, equal vectors."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    vec = [rng.uniform(-1.0, 1.0) for _ in range(dimensions)]
    norm = sum(v * v for v in vec) ** 0.5 or 1.0
    # Round-trip through float32 so float and base64 encodings carry the same numbers.
    packed = struct.pack(f"<{dimensions}f", *(v / norm for v in vec))
    return struct.unpack(f"<{dimensions}f", packed)


def embedding_base64(vec: tuple[float, ...]) -> str:
    """The OpenAI ``encoding_format: base64`` form: little-endian float32s, base64."""
    return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
