"""One proxied call as it travels through the pipeline, and the stage signature.

A stage is an async callable ``(call, next_stage) -> UpstreamReply``; stages are built once at
start-up by ``sluice_sidecar.pipeline.compose.build_pipeline``. Everything request-specific lives
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
CacheStatus = Literal["hit", "miss", "bypass", "off"]  # a stale answer served counts as a hit


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
    """One call; the fields after ``deadline`` are how stages hand results to each other.

    Each such field names the stage that writes it and the stages that read it, so a stage's
    dependency on another is visible here and nowhere else (stages never import each other).
    """

    # The request, set by the data port (api.proxy) before the pipeline runs; read-only after.
    api: ApiFamily
    kind: RouteKind
    path: str
    query: str
    operation: Operation
    session: str | None  # X-LLM-Session
    model: str | None  # None: a model listing
    stream: bool
    body: dict[str, Any] | None  # the parsed JSON body; None: no body (GET)
    raw_body: bytes | None
    client_headers: dict[str, str]
    runtime: Runtime  # the configuration this call started under (a swap never changes it)
    deadline: float  # event-loop time by which the whole call must be answered
    # Written by fallback (the candidate being tried), batching (the merged call's); read by
    # retry, circuit, upstream, latency, budget and metering (its price and record).
    provider: Provider | None = None
    # Written by circuit (+1 per attempt admitted) and retry (+1 per retry), batching (copied
    # from the merged call); read by metering, the data port and the telemetry.
    attempts: int = 0
    retries: int = 0
    # Written and read by upstream alone: the body prepared per provider, kept across retries.
    prepared_bodies: dict[str, bytes | None] = field(default_factory=dict)
    started_wall: float = field(default_factory=time.time)  # wall clock, for the call record
    # Written by metering before the call (tokens and cost at worst); read by latency (prompt
    # tokens) and budget (what to reserve). None only before metering has run.
    estimate: Estimate | None = None
    # Written by metering from the answer; read by budget (to settle), cache (what a hit saved)
    # and the data port.
    usage: Usage | None = None  # what the provider reported; None: unknown (yet)
    cost: Decimal | None = None  # None: unknown usage or unpriced model
    # Attempts that reached a provider and got no answer (it may bill them): appended by the
    # upstream stage (batching copies a merged call's share to each caller), priced by
    # metering (recorded apart) and budget (charged) stages.
    lost_attempts: list[LostAttempt] = field(default_factory=list)
    # Written by cache (hit, miss, bypass) and coalesce (hit, for a shared answer); read by
    # latency (a hit is not a provider's latency), metering (saved cost) and the data port.
    cache_status: CacheStatus = "off"
    # Written by cache for cacheable calls only; read by coalesce (which calls are identical).
    # None: not cacheable, so never coalesced.
    cache_key: str | None = None
    # x-sluice-* headers for the client: added by latency, cache, coalesce and budget; sent by
    # the data port.
    response_headers: dict[str, str] = field(default_factory=dict)
    # Time as the caller sees it, in event-loop seconds (api.call_timing). Written by the data
    # port: when the request arrived, this call's timeout (the operation's, or X-LLM-Timeout's)
    # and its warning point; read by latency (the in-flight list) and the data port's headers.
    started: float = 0.0
    timeout_s: float = 0.0
    warn_after_s: float = 0.0
    # Written by latency (the prediction for the primary provider); read by the in-flight list
    # and the stream heartbeats. None: no prediction (a call without a model).
    estimate_s: float | None = None
    # Written by upstream (when the first attempt was sent, and the time spent in attempts,
    # failed ones included; batching copies a merged call's to each caller); read by the data
    # port's Server-Timing (queue, upstream).
    first_attempt_at: float | None = None
    upstream_s: float = 0.0
    # Written by latency when the operation has adaptive attempt timeouts: seconds by provider
    # name, for the providers with enough history; read by upstream. Empty: attempts run to the
    # call's deadline.
    attempt_timeouts: dict[str, float] = field(default_factory=dict)

    @property
    def model_name(self) -> str:
        return self.model or "-"

    @property
    def operation_name(self) -> str:
        return self.operation.name

    @property
    def provider_name(self) -> str:
        return self.provider.name if self.provider is not None else "none"


Next = Callable[[Call], Awaitable[UpstreamReply]]


class Stage(Protocol):
    """A stage; one with nothing to do for a call may return ``next_stage(call)`` itself
    instead of awaiting it (a coroutine less per call)."""

    def __call__(self, call: Call, next_stage: Next) -> Awaitable[UpstreamReply]: ...
