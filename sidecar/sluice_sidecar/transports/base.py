"""The transport interface and the request/reply values that cross it.

A transport raises the errors of ``sluice_sidecar.errors`` (classified transient or permanent)
for anything but a 2xx answer. A streaming reply is returned only once its first chunk arrived,
so a stream that dies before it started is an ordinary, retryable failure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    stream: bool
    # The credentials among ``headers`` (the provider key, under whatever header name the
    # provider uses): masked in any error text or relayed body that would show them.
    secrets: tuple[str, ...] = ()


@dataclass(slots=True)
class UpstreamReply:
    status: int
    headers: dict[str, str]
    body: bytes = b""  # the whole answer, for non-streaming calls
    json: Any = None  # the parsed answer, for non-streaming calls
    first_chunk: bytes = b""  # streaming: already received, not yet relayed
    chunks: AsyncIterator[bytes] | None = None  # streaming: the rest, as it arrives
    on_close: list[Callable[[], None]] = field(default_factory=list)

    @property
    def streaming(self) -> bool:
        return self.chunks is not None

    def close(self) -> None:
        """Release what the reply holds (connection, bulkhead slot). Safe to call twice."""
        callbacks, self.on_close = self.on_close, []
        for callback in reversed(callbacks):
            callback()


class Transport(Protocol):
    async def send(self, request: UpstreamRequest) -> UpstreamReply: ...
