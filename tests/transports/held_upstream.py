"""An upstream whose streams send their first event at once and the rest only when released.

Streams that stay open as long as a test wants, so that more of them can be in flight than a
pool or bulkhead allows: whatever is not served at once would show as a stream that never
starts while the others are held.
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

OPENAI_EVENT = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
)
OPENAI_END = b"data: [DONE]\n\n"


def _anthropic(name: str, data: dict[str, object]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (name.encode(), orjson.dumps({"type": name, **data}))


ANTHROPIC_START = _anthropic(
    "message_start",
    {
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "m",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
    },
)
ANTHROPIC_END = (
    _anthropic("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    + _anthropic("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "hi"}})
    + _anthropic("content_block_stop", {"index": 0})
    + _anthropic(
        "message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}}
    )
    + _anthropic("message_stop", {})
)


class HeldUpstream:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.open_streams = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def close(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        return await self._held(request, OPENAI_EVENT, OPENAI_END)

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._held(request, ANTHROPIC_START, ANTHROPIC_END)

    async def _held(self, request: web.Request, first: bytes, rest: bytes) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(first)
        self.open_streams += 1
        try:
            await self.release.wait()
            await response.write(rest)
            await response.write_eof()
        finally:
            self.open_streams -= 1
        return response
