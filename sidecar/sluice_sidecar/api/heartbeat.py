"""Stream heartbeats: SSE comment lines while a streamed call waits for its first token.

A streamed call whose first chunk has not arrived after ``latency.heartbeatSeconds`` (5 s by
default, the reference's progress interval) gets its 200 and the stream's headers at once,
then one comment line per interval::

    : sluice waiting elapsed_ms=5003 estimated_ms=12000 warning=ok

Every SSE client ignores lines starting with ``:`` (the official openai and anthropic SDKs
included; tests/latency/test_heartbeats.py shows both), and anyone reading the raw stream sees
progress. The pipeline runs in its own task behind the heartbeats, so retries and fallbacks go
on as they would; the first real chunk follows the last comment. Nothing is sent before the
first interval has passed, so a call that fails fast is still answered with its own status.
One that fails after the heartbeats began ends with an error event in the stream's own format
(the proxy's ``_end_stream_with_error``), which each SDK raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from sluice_sidecar.transports.base import UpstreamReply

StartStream = Callable[[], Awaitable[web.StreamResponse]]


def heartbeat_line(elapsed_s: float, estimate_s: float | None, warning: str) -> bytes:
    estimate = "-" if estimate_s is None else str(round(estimate_s * 1000))
    line = f": sluice waiting elapsed_ms={round(elapsed_s * 1000)} estimated_ms={estimate}"
    return f"{line} warning={warning}\n\n".encode()


class Heartbeats:
    """Await a pipeline run; past each interval without its reply, a heartbeat on the stream."""

    def __init__(self, interval_s: float, start_stream: StartStream) -> None:
        self._interval_s = interval_s
        self._start_stream = start_stream
        self.stream: web.StreamResponse | None = None  # set once the first heartbeat is due
        self.sent = 0

    async def run(
        self, pipeline: Awaitable[UpstreamReply], line: Callable[[], bytes]
    ) -> UpstreamReply:
        task = asyncio.ensure_future(pipeline)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._interval_s)
                if done:
                    return task.result()
                if self.stream is None:
                    self.stream = await self._start_stream()
                await self.stream.write(line())
                self.sent += 1
        except BaseException:
            await _abandon(task)
            raise


async def _abandon(task: asyncio.Future[UpstreamReply]) -> None:
    """Stop the pipeline run (the deadline passed or the client left) and release its reply."""
    if not task.done():
        task.cancel()
        await asyncio.wait({task})
    if not task.cancelled() and task.exception() is None:
        task.result().close()
