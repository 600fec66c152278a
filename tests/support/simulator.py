"""A scriptable stand-in for the OpenAI and Anthropic APIs, for tests, the demo and the benchmark.

``SimulatedLLM`` is a small aiohttp server speaking both wire formats (the builders live in
``simulator_openai`` and ``simulator_anthropic``). Tests start one per upstream (the ``llm`` and
``llm_factory`` fixtures in ``tests/conftest.py``), script failures with the behaviours of
``simulator_script`` and read back what the proxy sent in ``requests``. The demo and the benchmark
run it as a process::

    python -m tests.support.simulator --host 127.0.0.1 --port 18001 [--name sim] [--latency-ms 0]
        [--error-rate 0] [--seed 1]

which prints ``simulator listening on http://...`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import random
import signal
import time
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from tests.support import simulator_anthropic, simulator_openai
from tests.support.simulator_common import DEFAULT_MODELS, Env, Problem, Route, dumps
from tests.support.simulator_script import (
    Behaviour,
    BreakStream,
    Delay,
    Fail,
    FailStream,
    Garbage,
    Hang,
    RecordedRequest,
    Respond,
)

__all__ = [
    "Behaviour",
    "BreakStream",
    "Delay",
    "Fail",
    "FailStream",
    "Garbage",
    "Hang",
    "RecordedRequest",
    "Respond",
    "SimulatedLLM",
]

CHAT = simulator_openai.ChatCompletions()
COMPLETIONS = simulator_openai.Completions()
EMBEDDINGS = simulator_openai.Embeddings()
OPENAI_MODELS = simulator_openai.Models()
MESSAGES = simulator_anthropic.Messages()
ANTHROPIC_MODELS = simulator_anthropic.Models()
STREAMING_ROUTES = (CHAT, COMPLETIONS, MESSAGES)
ANSWER_CACHE_SIZE = 1024
_INVALID = object()  # a body that is not JSON
# Set on a request whose connection the simulator itself dropped (not a client disconnect).
_DROPPED = web.RequestKey("sim_dropped", bool)


class SimulatedLLM:
    """One simulated provider on a loopback port; see the module docstring.

    ``models``: the models ``/v1/models`` lists; when given, requests for any other model get the
    API's 404. ``error_rate``: share of requests answered 429 (``retry-after: 0.05``) or 503, drawn
    from ``random.Random(seed)``. ``record``: keep every request in ``requests`` (the CLI turns it
    off so a long run does not grow). ``gate``: when given, every answer waits until it is set,
    so a test holds calls in flight for as long as it needs, however slow the machine.
    """

    def __init__(
        self,
        *,
        name: str = "sim",
        latency_s: float = 0.0,
        stream_chunk_delay_s: float = 0.0,
        chunks: int = 5,
        models: list[str] | None = None,
        error_rate: float = 0.0,
        seed: int | None = None,
        record: bool = True,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.name = name
        self.latency_s = latency_s
        self.stream_chunk_delay_s = stream_chunk_delay_s
        self.chunks = chunks
        self.models = tuple(models) if models is not None else DEFAULT_MODELS
        self.allowed = frozenset(models) if models is not None else None
        self.error_rate = error_rate
        self.record = record
        self.gate = gate
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0
        self.disconnected = asyncio.Event()
        self.in_flight = 0
        self.url = ""
        self.openai_base_url = ""
        self.anthropic_base_url = ""
        self._rng = random.Random(seed)
        self._script: collections.deque[Behaviour] = collections.deque()
        self._seq = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._closing = False
        self._headers = {"x-sim-name": name}
        self._answers: dict[tuple[Route, bytes], dict[str, Any]] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._handler(CHAT))
        app.router.add_post("/v1/completions", self._handler(COMPLETIONS))
        app.router.add_post("/v1/embeddings", self._handler(EMBEDDINGS))
        app.router.add_post("/v1/messages", self._handler(MESSAGES))
        app.router.add_get("/v1/models", self._models)
        # Cancel the handler when the client goes away: that is how disconnects are observed.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound = self._runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{bound}"
        self.openai_base_url = self.url + "/v1"
        self.anthropic_base_url = self.url

    async def close(self) -> None:
        if self._runner is not None:
            self._closing = True
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimulatedLLM:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- scripting ---------------------------------------------------------------------------

    def enqueue(self, *behaviours: Behaviour) -> None:
        """The next requests, on any route, consume these in order; then normal answers."""
        self._script.extend(behaviours)

    def _next_behaviour(self) -> Behaviour | None:
        if self._script:
            return self._script.popleft()
        if self.error_rate and self._rng.random() < self.error_rate:
            return Fail(429, retry_after=0.05) if self._rng.random() < 0.5 else Fail(503)
        return None

    def _note_disconnect(self) -> None:
        self.disconnects += 1
        self.disconnected.set()

    # -- serving -----------------------------------------------------------------------------

    def _handler(self, route: Route) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._serve(request, route)

        return handle

    async def _models(self, request: web.Request) -> web.StreamResponse:
        anthropic = "anthropic-version" in request.headers
        return await self._serve(request, ANTHROPIC_MODELS if anthropic else OPENAI_MODELS)

    async def _serve(self, request: web.Request, route: Route) -> web.StreamResponse:
        self.in_flight += 1
        try:
            return await self._answer(request, route)
        except asyncio.CancelledError:
            if not self._closing and not request.get(_DROPPED):
                self._note_disconnect()
            raise
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request, route: Route) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = _INVALID
        if self.record:
            self.requests.append(
                RecordedRequest(
                    request.method,
                    request.path,
                    CIMultiDict(request.headers),
                    None if body is _INVALID else body,
                    asyncio.get_running_loop().time(),
                    raw,
                )
            )
        behaviour = self._next_behaviour()
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.gate is not None:
            await self.gate.wait()
        content = None
        if isinstance(behaviour, Respond | Delay):
            if behaviour.latency_s:
                await asyncio.sleep(behaviour.latency_s)
            content = behaviour.content if isinstance(behaviour, Respond) else None
            behaviour = None
        env = Env(
            self.name,
            self.chunks,
            next(self._seq),
            int(time.time()),
            content,
            self.models,
            self.allowed,
        )
        streaming = (
            route in STREAMING_ROUTES and isinstance(body, dict) and body.get("stream") is True
        )
        if behaviour is not None:
            return await self._misbehave(request, route, behaviour, body, env, streaming)
        answer = self._answers.get((route, raw)) if content is None and not streaming else None
        if answer is not None:
            answer = route.renew(answer, env)
        else:
            problem = route.check(body, env)
            if problem is not None:
                return self._error(route, problem, None, None)
            if streaming:
                return await self._stream(request, route, body, env)
            answer = route.answer(body, env)
            if content is None:
                self._remember(route, raw, answer)
        return web.Response(body=dumps(answer), headers=self._json_headers(env))

    def _remember(self, route: Route, raw: bytes, answer: dict[str, Any]) -> None:
        """Keep the answer to a repeated body: the benchmark sends one body thousands of times."""
        if len(self._answers) >= ANSWER_CACHE_SIZE:
            self._answers.clear()
        self._answers[(route, raw)] = answer

    def _json_headers(self, env: Env) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "x-sim-name": self.name,
            "x-request-id": f"req_{env.seq:024x}",
        }

    def _error(
        self,
        route: Route,
        problem: Problem,
        retry_after: float | None,
        extra: dict[str, str] | None,
    ) -> web.Response:
        headers = {**self._headers, **route.error_headers(problem.status, retry_after)}
        headers.update(extra or {})
        headers["Content-Type"] = "application/json"
        return web.Response(
            status=problem.status, body=dumps(route.error_body(problem)), headers=headers
        )

    async def _misbehave(
        self,
        request: web.Request,
        route: Route,
        behaviour: Behaviour,
        body: Any,
        env: Env,
        streaming: bool,
    ) -> web.StreamResponse:
        if isinstance(behaviour, Fail):
            problem = Problem(behaviour.status, behaviour.message or "")
            return self._error(route, problem, behaviour.retry_after, behaviour.headers)
        if isinstance(behaviour, Garbage):
            headers = {**self._headers, "Content-Type": behaviour.content_type}
            return web.Response(status=behaviour.status, body=behaviour.body, headers=headers)
        streams = streaming and route.check(body, env) is None
        if isinstance(behaviour, BreakStream):
            if streams:
                return await self._stream(request, route, body, env, behaviour.after_chunks)
            return self._drop(request)
        if isinstance(behaviour, FailStream):
            problem = Problem(behaviour.status, behaviour.message or "")
            if streams:
                ending = route.stream_error(problem)
                return await self._stream(request, route, body, env, behaviour.after_chunks, ending)
            return self._error(route, problem, None, None)
        assert isinstance(behaviour, Hang)
        await asyncio.get_running_loop().create_future()  # until the client goes away
        raise AssertionError("unreachable")

    def _drop(self, request: web.Request) -> web.StreamResponse:
        """Close the connection; aiohttp then fails quietly to send the returned response."""
        request[_DROPPED] = True
        if request.transport is not None:
            request.transport.close()
        return web.Response()

    async def _stream(
        self,
        request: web.Request,
        route: Route,
        body: Any,
        env: Env,
        cut: int | None = None,
        ending: bytes | None = None,
    ) -> web.StreamResponse:
        """Send the SSE answer; with ``cut``, only that many content chunks, then ``ending``
        (an in-stream error event) or, without one, drop the connection."""
        plan = route.stream(body, env)
        headers = {
            **self._headers,
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
        }
        resp = web.StreamResponse(headers=headers)
        delay = self.stream_chunk_delay_s
        try:
            await resp.prepare(request)
            if cut is None and not delay:
                await resp.write(b"".join(plan.head + plan.content + plan.tail))
                await resp.write_eof()
                return resp
            await resp.write(b"".join(plan.head))
            frames = plan.content if cut is None else plan.content[:cut]
            for i, frame in enumerate(frames):
                if delay and i:
                    await asyncio.sleep(delay)
                await resp.write(frame)
            if cut is None:
                if delay:
                    await asyncio.sleep(delay)
                await resp.write(b"".join(plan.tail))
            elif ending is None:
                self._drop(request)
                return resp
            else:
                await resp.write(ending)
            await resp.write_eof()
        except ConnectionResetError:
            self._note_disconnect()
        return resp


async def _serve_forever(args: argparse.Namespace) -> None:
    sim = SimulatedLLM(
        name=args.name,
        latency_s=args.latency_ms / 1000,
        stream_chunk_delay_s=args.chunk_delay_ms / 1000,
        chunks=args.chunks,
        error_rate=args.error_rate,
        seed=args.seed,
        record=False,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await sim.start(args.host, args.port)
    print(f"simulator listening on {sim.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a simulated OpenAI/Anthropic upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18001)
    parser.add_argument("--name", default="sim")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0)
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    asyncio.run(_serve_forever(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
