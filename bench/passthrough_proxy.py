"""The floor under the sidecar: a bare aiohttp reverse proxy, for `proxy_overhead.py --floor`.

One aiohttp server relaying every request to one upstream through one keep-alive
``ClientSession`` (no pool limit), with no pipeline at all; an event stream is relayed chunk by
chunk as it arrives (``streaming.py``). What the sidecar costs above this is its own doing;
what this costs above nginx is aiohttp's and asyncio's. ``--loop uvloop`` runs it on uvloop.

    python bench/passthrough_proxy.py --port 18002 --upstream http://127.0.0.1:18001
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
import uvloop
from aiohttp import web

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}
SESSION = web.AppKey("session", aiohttp.ClientSession)


def build_app(upstream: str) -> web.Application:
    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(upstream, connector=connector) as session:
            app[SESSION] = session
            yield

    async def relay(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        session = request.app[SESSION]
        async with session.request(
            request.method, request.rel_url, data=body, headers=headers
        ) as reply:
            relayed = {k: v for k, v in reply.headers.items() if k.lower() not in HOP_BY_HOP}
            if reply.content_type == "text/event-stream":
                stream = web.StreamResponse(status=reply.status, headers=relayed)
                await stream.prepare(request)
                async for chunk in reply.content.iter_any():
                    await stream.write(chunk)
                await stream.write_eof()
                return stream
            payload = await reply.read()
            return web.Response(status=reply.status, body=payload, headers=relayed)

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", relay)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:18001")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()
    loop = uvloop.new_event_loop() if args.loop == "uvloop" else asyncio.new_event_loop()
    web.run_app(build_app(args.upstream), host=args.host, port=args.port, access_log=None,
                print=None, loop=loop)  # fmt: skip


if __name__ == "__main__":
    main()
