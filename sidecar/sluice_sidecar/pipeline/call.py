"""One proxied call as it travels through the pipeline, and the stage signature.

A stage is an async callable ``(call, next_stage) -> UpstreamReply``; stages are built once at
start-up and composed in ``sluice_sidecar.pipeline.compose``. Everything request-specific lives
on the ``Call``; everything configuration-specific on ``call.runtime``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sluice_sidecar.errors import ApiFamily
from sluice_sidecar.runtime import Operation, Provider, Runtime
from sluice_sidecar.transports.base import UpstreamReply

RouteKind = Literal["chat", "completions", "embeddings", "messages", "models"]


@dataclass(slots=True)
class Call:
    api: ApiFamily
    kind: RouteKind
    path: str
    query: str
    operation: Operation
    session: str | None
    model: str | None
    stream: bool
    body: dict[str, Any] | None
    raw_body: bytes | None
    client_headers: dict[str, str]
    runtime: Runtime
    deadline: float  # event-loop time by which the whole call must be answered
    provider: Provider | None = None
    attempts: int = 0
    retries: int = 0
    prepared_bodies: dict[str, bytes | None] = field(default_factory=dict)

    @property
    def model_name(self) -> str:
        return self.model or "-"


Next = Callable[[Call], Awaitable[UpstreamReply]]


class Stage(Protocol):
    async def __call__(self, call: Call, next_stage: Next) -> UpstreamReply: ...
