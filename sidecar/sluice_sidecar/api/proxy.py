"""The data port: OpenAI- and Anthropic-compatible routes in front of the pipeline.

Per request: read and check the body once, resolve the operation, open the call's single
deadline (the operation's timeout, or ``X-LLM-Timeout``) and its warning timer, run the
pipeline, and relay the answer (streams chunk by chunk as they arrive; a slow stream's first
token behind heartbeats, ``api.heartbeat``). Every answer carries its timing headers
(``api.call_timing``) and every call ends with one "completed" log line
(``observability.call_log``). Every failure becomes an error in the caller's own API format;
nothing here lets an exception escape as a bare 500.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiohttp import web

from sluice_sidecar.api.boundary import check_headers, parse_body
from sluice_sidecar.api.call_timing import (
    TIMEOUT_HEADER,
    answer_timing,
    heartbeat,
    refused_timing,
    requested_timeout,
)
from sluice_sidecar.api.health_checks import health_check_lifespan
from sluice_sidecar.api.heartbeat import Heartbeats
from sluice_sidecar.api.keys import OTEL, STATE
from sluice_sidecar.economics.latency_file import history_lifespan
from sluice_sidecar.errors import (
    ApiFamily,
    BodyTimedOut,
    BodyTooLarge,
    BudgetExceeded,
    DeadlineExceeded,
    LimitExceeded,
    MalformedRequest,
    NotConfigured,
    PermanentUpstreamError,
    RouteNotFound,
    SluiceError,
    TransientUpstreamError,
    UpstreamError,
    render_error,
)
from sluice_sidecar.observability import call_log, otel
from sluice_sidecar.observability.call_log import Completed, log_completed
from sluice_sidecar.pipeline.call import Call, RouteKind
from sluice_sidecar.pipeline.runtime import Operation
from sluice_sidecar.service.state import SidecarState
from sluice_sidecar.transports.base import UpstreamReply

logger = logging.getLogger("sluice.proxy")

CLIENT_CLOSED = 499  # nginx's convention for "the client went away first"


def build_data_app(
    state: SidecarState, telemetry: otel.CallTelemetry | None = None
) -> web.Application:
    app = web.Application(client_max_size=state.settings.max_body_bytes)
    app[STATE] = state
    app[OTEL] = telemetry or otel.CallTelemetry()  # default: export off
    app.cleanup_ctx.append(history_lifespan(state.settings.state_dir, state.latency))
    app.cleanup_ctx.append(health_check_lifespan(state))
    routes = [
        ("POST", "/v1/chat/completions", "openai", "chat"),
        ("POST", "/v1/completions", "openai", "completions"),
        ("POST", "/v1/embeddings", "openai", "embeddings"),
        ("GET", "/v1/models", "openai", "models"),
        ("POST", "/v1/messages", "anthropic", "messages"),
    ]
    for method, path, api, kind in routes:
        app.router.add_route(method, path, _handler(api, kind))  # type: ignore[arg-type]
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app


def _handler(api: ApiFamily, kind: RouteKind):
    async def handle(request: web.Request) -> web.StreamResponse:
        # GET /v1/models is both APIs' path: the Anthropic SDK marks itself with a header.
        family: ApiFamily = (
            "anthropic" if kind == "models" and "anthropic-version" in request.headers else api
        )
        return await _proxy(request, family, kind)

    return handle


async def _not_found(request: web.Request) -> web.Response:
    api: ApiFamily = "anthropic" if "anthropic-version" in request.headers else "openai"
    error = RouteNotFound(f"no route {request.method} {request.path} on the Sluice sidecar")
    return _error_response(error, api)


async def _proxy(request: web.Request, api: ApiFamily, kind: RouteKind) -> web.StreamResponse:
    state = request.app[STATE]
    runtime = state.runtime
    if runtime is None:
        return _error_response(NotConfigured("the sidecar has no configuration loaded yet"), api)
    metrics = state.metrics
    loop = asyncio.get_running_loop()
    started = loop.time()
    metrics.in_flight.inc()
    status = 500
    call: Call | None = None
    handle = otel.NO_CALL
    operation_name = "-"
    try:
        try:
            call = await _read_call(request, api, kind, runtime, started, state)
        except SluiceError as error:
            status = error.status
            metrics.error(error)
            if (limit := _limit_of(error)) is not None:
                metrics.refused.labels(limit).inc()
            refused = _error_response(error, api)
            refused.headers.update(refused_timing(loop.time() - started))
            return refused
        operation_name = call.operation.name
        handle = request.app[OTEL].start(call)
        response, status = await _run(request, state, call, handle)
        if not response.prepared:  # a whole answer: its headers are not sent yet
            response.headers.update(answer_timing(call, loop.time()))
        return response
    except asyncio.CancelledError:
        status = CLIENT_CLOSED
        handle.failed("client_closed")
        raise
    finally:
        metrics.in_flight.dec()
        if call is not None:
            cache = None if call.cache_status == "off" else call.cache_status
            handle.end(
                status, provider=call.provider, usage=call.usage, cost=call.cost, cache_status=cache
            )
        elapsed = loop.time() - started
        provider = call.provider.name if call and call.provider else "none"
        model = metrics.model_label(call.model_name) if call else "-"
        metrics.answered(provider, model, operation_name, status, elapsed)
        if call is not None:
            state.stats.record(
                provider, operation_name, ok=status < 400, retries=call.retries, latency_s=elapsed
            )
            if call_log.enabled():
                _log_completed(call, status, elapsed)


async def _read_call(
    request: web.Request,
    api: ApiFamily,
    kind: RouteKind,
    runtime: Any,
    started: float,
    state: SidecarState,
) -> Call:
    check_headers(request.headers)
    operation: Operation = runtime.operation(request.headers.get("x-llm-operation"))
    timeout = requested_timeout(
        request.headers.get(TIMEOUT_HEADER), operation.timeout_s, operation.max_timeout_s
    )
    body: dict[str, Any] | None = None
    raw: bytes | None = None
    model: str | None = None
    stream = False
    if request.method == "POST":
        limit = state.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLarge(f"request body of {request.content_length} bytes exceeds {limit}")
        try:
            raw = await _read_body(request, state.settings.body_timeout_s)
        except web.HTTPRequestEntityTooLarge as error:
            raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes") from error
        except TimeoutError as error:
            raise BodyTimedOut(state.settings.body_timeout_s) from error
        body = parse_body(raw)
        model = body["model"]
        stream = body.get("stream") is True and kind != "embeddings"
    return Call(
        api=api,
        kind=kind,
        path=request.path,
        query=request.query_string,
        operation=operation,
        session=request.headers.get("x-llm-session"),
        model=model,
        stream=stream,
        body=body,
        raw_body=raw,
        client_headers={k.lower(): v for k, v in request.headers.items()},
        runtime=runtime,
        deadline=started + timeout,
        started=started,
        timeout_s=timeout,
        warn_after_s=timeout * operation.warning_threshold,
    )


async def _read_body(request: web.Request, timeout_s: float) -> bytes:
    """The whole body, within ``timeout_s``. A body that arrived with the headers (most do)
    cannot make the read wait, so it needs no timeout scope."""
    if request.content.is_eof():
        return await request.read()
    async with asyncio.timeout(timeout_s):
        return await request.read()


async def _run(
    request: web.Request, state: SidecarState, call: Call, handle: otel.CallHandle
) -> tuple[web.StreamResponse, int]:
    loop = asyncio.get_running_loop()
    operation = call.operation
    timer: asyncio.TimerHandle | None = None
    reply: UpstreamReply | None = None
    stream: web.StreamResponse | None = None
    interval = call.runtime.config.latency.heartbeat_seconds
    beats = Heartbeats(interval, lambda: _start_heartbeats(request, call)) if interval else None
    try:
        async with asyncio.timeout(None) as deadline:
            # One timer for the warning and the deadline: the deadline's own is armed only
            # when the warning fires (a slow call); a timer costs about as much as a stage.
            warn_at = call.started + call.warn_after_s
            timer = loop.call_at(min(warn_at, call.deadline), _warn_slow, state, call, deadline)
            if call.stream and beats is not None:
                reply = await beats.run(state.pipeline(call), lambda: heartbeat(call))
                stream = beats.stream
            else:
                reply = await state.pipeline(call)
            if stream is None and not reply.streaming:
                handle.answer(*_model_and_output(reply.json))
                return _reply_response(reply, call), reply.status
            if not reply.streaming:  # after heartbeats, a stream call must stream
                raise SluiceError(f"{operation.name}: the provider's answer was not a stream")
            if stream is None:
                stream = await _start_stream(request, reply, call)
            state.metrics.first_token_of(
                call.provider.name if call.provider else "none",
                state.metrics.model_label(call.model_name),
                operation.name,
            ).observe(loop.time() - call.started)
            await _relay(stream, reply, handle)
            return stream, reply.status
    except TimeoutError:
        error: SluiceError = DeadlineExceeded(
            f"{operation.name} timed out after {_seconds(call.timeout_s)}"
            f" ({call.attempts} attempt(s), timeout {_seconds(call.timeout_s)})"
        )
    except SluiceError as caught:
        error = caught
    except ConnectionResetError:
        # The client went away mid-stream: nothing to answer; the upstream is closed below.
        stream = stream or (beats.stream if beats is not None else None)
        assert stream is not None
        handle.failed("client_closed")
        return stream, CLIENT_CLOSED
    except Exception:
        # A bug must still answer in the caller's format, and never take the sidecar down.
        logger.exception("%s failed inside the sidecar", operation.name)
        error = SluiceError("internal error in the Sluice sidecar; see its log")
    finally:
        if timer is not None:
            timer.cancel()
        if reply is not None:
            reply.close()
    provider = call.provider.name if call.provider else "none"
    state.metrics.error(error, provider, state.metrics.model_label(call.model_name))
    handle.failed(error.code)
    if isinstance(error, BudgetExceeded):
        details = error.details or {}
        handle.budget_over(str(details.get("budget")), str(details.get("limitKind")), "hard")
    if stream is None and beats is not None:
        stream = beats.stream  # heartbeats were sent: the answer has begun
    if stream is not None:
        # Bytes already reached the client: end the stream with an error event instead.
        logger.warning("%s stream ended early: %s", operation.name, error.message)
        await _end_stream_with_error(stream, error, call.api)
        return stream, error.status
    if isinstance(error, UpstreamError) and error.upstream_status and error.body:
        return _upstream_error_response(error), error.status
    return _error_response(error, call.api), error.status


def _sluice_headers(call: Call) -> dict[str, str]:
    return {
        "x-sluice-provider": call.provider.name if call.provider else "none",
        "x-sluice-attempts": str(call.attempts),
        "x-sluice-operation": call.operation.name,
        **call.response_headers,
    }


def _reply_response(reply: UpstreamReply, call: Call) -> web.Response:
    headers = reply.headers | _sluice_headers(call)
    return web.Response(status=reply.status, body=reply.body, headers=headers)


async def _start_stream(
    request: web.Request, reply: UpstreamReply, call: Call
) -> web.StreamResponse:
    timing = answer_timing(call, asyncio.get_running_loop().time())
    stream = web.StreamResponse(
        status=reply.status, headers=reply.headers | _sluice_headers(call) | timing
    )
    await stream.prepare(request)
    return stream


async def _start_heartbeats(request: web.Request, call: Call) -> web.StreamResponse:
    """The 200 of a stream whose first token is late: SSE headers, ours as they are now."""
    headers = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
    headers |= _sluice_headers(call) | answer_timing(call, asyncio.get_running_loop().time())
    stream = web.StreamResponse(status=200, headers=headers)
    await stream.prepare(request)
    return stream


def _log_completed(call: Call, status: int, elapsed_s: float) -> None:
    usage = call.usage
    log_completed(
        Completed(
            provider=call.provider_name,
            display_name=call.provider.display_name if call.provider else "none",
            operation=call.operation.name,
            model=call.model_name,
            status=status,
            latency_ms=round(elapsed_s * 1000),
            input_tokens=usage.input_tokens if usage else None,
            output_tokens=usage.output_tokens if usage else None,
            retries=call.retries,
            attempts=call.attempts,
            cache=call.cache_status,
            cost_usd=call.cost,
            session=call.session,
            stream=call.stream,
        )
    )


async def _relay(stream: web.StreamResponse, reply: UpstreamReply, handle: otel.CallHandle) -> None:
    assert reply.chunks is not None
    handle.chunk()
    write = stream.write
    await write(reply.first_chunk)
    if handle is otel.NO_CALL:  # export off: no per-chunk call into the telemetry
        async for chunk in reply.chunks:
            await write(chunk)
    else:
        async for chunk in reply.chunks:
            handle.chunk()
            await write(chunk)
    await stream.write_eof()


def _model_and_output(answer: Any) -> tuple[str | None, Any]:
    """The model a JSON answer names, and its content (choices, content) for opt-in capture."""
    if not isinstance(answer, dict):
        return None, None
    model = answer.get("model")
    return (model if isinstance(model, str) else None), answer.get("choices", answer.get("content"))


async def _end_stream_with_error(
    stream: web.StreamResponse, error: SluiceError, api: ApiFamily
) -> None:
    payload = orjson.dumps(render_error(error, api))
    event = b"event: error\ndata: " if api == "anthropic" else b"data: "
    try:
        await stream.write(b"\n\n" + event + payload + b"\n\n")
        await stream.write_eof()
    except ConnectionResetError:
        pass


def _upstream_error_response(error: UpstreamError) -> web.Response:
    """Relay the provider's own error (same API family as the caller) unchanged."""
    return web.Response(status=error.status, body=error.body, headers=error.headers)


def _error_response(error: SluiceError, api: ApiFamily) -> web.Response:
    headers = {"content-type": "application/json"}
    if error.retry_after is not None:
        headers["retry-after"] = str(max(1, round(error.retry_after)))
    if isinstance(error, TransientUpstreamError | PermanentUpstreamError) and error.upstream_status:
        headers.update({k: v for k, v in error.headers.items() if k.startswith("x-ratelimit")})
    return web.Response(
        status=error.status, body=orjson.dumps(render_error(error, api)), headers=headers
    )


def protocol_error_response(status: int, reason: str) -> web.Response:
    """A request aiohttp could not parse: no route is known, so the OpenAI format (the default)."""
    error = MalformedRequest(reason, code="malformed_http")
    error.status = status  # aiohttp's choice (400, or 413/431 for sizes)
    return _error_response(error, "openai")


def _limit_of(error: SluiceError) -> str | None:
    """The boundary limit a refusal comes from, for ``sluice_limits_hit_total``."""
    if isinstance(error, LimitExceeded):
        return error.limit
    return "body_size" if isinstance(error, BodyTooLarge) else None


def _seconds(value: float) -> str:
    return f"{value:.0f}s" if value >= 10 else f"{value:.1f}s"


def _warn_slow(state: SidecarState, call: Call, deadline: asyncio.Timeout) -> None:
    """The call passed its warning point (or its deadline, when that comes first): warn, and
    arm the deadline."""
    deadline.reschedule(call.deadline)
    if call.warn_after_s > call.timeout_s:
        return  # the warning point lies past the deadline: the call never reaches it
    elapsed = asyncio.get_running_loop().time() - call.started
    state.metrics.timeout_warnings.labels(call.operation.name).inc()
    logger.warning(
        "%s is taking longer than usual (%s / %s, %.0f%%)",
        call.operation.name,
        _seconds(elapsed),
        _seconds(call.timeout_s),
        100 * elapsed / call.timeout_s,
    )
