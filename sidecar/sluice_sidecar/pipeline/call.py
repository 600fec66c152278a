"""One proxied call as it travels through the pipeline, and the stage signature.

A stage is an async callable ``(call, next_stage) -> UpstreamReply``; stages are built once at
start-up and composed in ``sluice_sidecar.pipeline.compose``. Everything request-specific lives
on the ``Call``; everything configuration-specific on ``call.runtime``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol

from sluice_sidecar.economics.unanswered import LostAttempt
from sluice_sidecar.economics.usage import Usage
from sluice_sidecar.errors import ApiFamily
from sluice_sidecar.pipeline.runtime import Operation, Provider, Runtime
from sluice_sidecar.transports.base import UpstreamReply

RouteKind = Literal["chat", "completions", "embeddings", "messages", "models"]
CacheStatus = Literal["hit", "miss", "bypass", "off"]


@dataclass(frozen=True, slots=True)
class Estimate:
    """Before the call: prompt tokens from the text, output bounded by max_tokens."""

    prompt_tokens: int
    max_output_tokens: int
    cost: Decimal | None  # None: the model has no price

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.max_output_tokens


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
    started_wall: float = field(default_factory=time.time)
    # Economics, filled by the stages (metering, cache, budget, ...):
    estimate: Estimate | None = None
    usage: Usage | None = None  # what the provider reported; None: unknown (yet)
    cost: Decimal | None = None  # None: unknown usage or unpriced model
    # Attempts that reached a provider and got no answer (it may bill them): appended by the
    # upstream stage, priced by metering (recorded apart) and budget (charged) stages.
    lost_attempts: list[LostAttempt] = field(default_factory=list)
    cache_status: CacheStatus = "off"
    cache_key: str | None = None  # set by the cache stage for cacheable calls
    response_headers: dict[str, str] = field(default_factory=dict)  # x-sluice-* to the client

    @property
    def model_name(self) -> str:
        return self.model or "-"


Next = Callable[[Call], Awaitable[UpstreamReply]]


class Stage(Protocol):
    async def __call__(self, call: Call, next_stage: Next) -> UpstreamReply: ...
