"""The floor under the sidecar: a bare reverse proxy on aiohttp.web, for the benchmarks.

One aiohttp server relaying every request to one upstream through one keep-alive client (no
pool limit), with no pipeline at all; an event stream is relayed chunk by chunk as it arrives
(``streaming.py``). What the sidecar costs above this is its own doing; what this costs above
nginx is aiohttp's and asyncio's. ``--loop uvloop`` runs it on uvloop; ``--client reqwest``
relays through pyreqwest (Rust reqwest/hyper) instead of aiohttp's ``ClientSession``, the
measurement that chooses the sidecar's transport.

    python bench/passthrough_proxy.py --port 18002 --upstream http://127.0.0.1:18001
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import uvloop
from aiohttp import web
from pyreqwest.client import Client, ClientBuilder

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}
EVENT_STREAM = "text/event-stream"
Relay = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _kept(headers: object) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}  # type: ignore[attr-defined]


async def _stream(
    request: web.Request, status: int, headers: dict[str, str], chunks: AsyncIterator[bytes]
) -> web.StreamResponse:
    stream = web.StreamResponse(status=status, headers=headers)
    await stream.prepare(request)
    async for chunk in chunks:
        await stream.write(chunk)
    await stream.write_eof()
    return stream


def aiohttp_relay(app: web.Application, upstream: str) -> Relay:
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(upstream, connector=connector) as session:
            app[session_key] = session
            yield

    app.cleanup_ctx.append(session_ctx)

    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        session = request.app[session_key]
        async with session.request(
            request.method, request.rel_url, data=body, headers=_kept(request.headers)
        ) as reply:
            relayed = _kept(reply.headers)
            if reply.content_type == EVENT_STREAM:
                return await _stream(request, reply.status, relayed, reply.content.iter_any())
            payload = await reply.read()
            return web.Response(status=reply.status, body=payload, headers=relayed)

    return relay


def reqwest_relay(app: web.Application, upstream: str) -> Relay:
    client_key = web.AppKey("client", Client)

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        async with ClientBuilder().max_connections(None).build() as client:
            app[client_key] = client
            yield

    app.cleanup_ctx.append(client_ctx)

    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        client = request.app[client_key]
        url = upstream + str(request.rel_url)
        builder = client.request(request.method, url).headers(_kept(request.headers))
        async with builder.body_bytes(body).build_streamed() as reply:
            relayed = _kept(reply.headers)
            if relayed.get("content-type", "").startswith(EVENT_STREAM):
                return await _stream(request, reply.status, relayed, _chunks(reply.body_reader))
            payload = bytes(await reply.bytes())
            return web.Response(status=reply.status, body=payload, headers=relayed)

    return relay


async def _chunks(reader) -> AsyncIterator[bytes]:  # type: ignore[no-untyped-def]
    while (chunk := await reader.read_chunk()) is not None:
        yield bytes(chunk)


def build_app(upstream: str, client: str = "aiohttp") -> web.Application:
    app = web.Application()
    relay = (reqwest_relay if client == "reqwest" else aiohttp_relay)(app, upstream)
    app.router.add_route("*", "/{tail:.*}", relay)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:18001")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--client", choices=("aiohttp", "reqwest"), default="aiohttp")
    args = parser.parse_args()
    loop = uvloop.new_event_loop() if args.loop == "uvloop" else asyncio.new_event_loop()
    app = build_app(args.upstream, args.client)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()
