"""The admin port: health, readiness, metrics, and the token-protected /admin/* API.

``/healthz``, ``/readyz`` and ``/metrics`` are open (probes and Prometheus scrape them);
everything under ``/admin/`` needs ``Authorization: Bearer <token>``. Without a configured
token the admin API is refused outright rather than left open. Every error is a JSON
``{"error": ...}`` (aiohttp's own 404, 405 and 413 included); what a caller sends wrong is a
4xx, never a 500. ``admin_openapi`` describes the whole surface.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from aiohttp import web

from sluice_sidecar.api.admin_openapi import openapi_document
from sluice_sidecar.api.admin_queries import (
    CircuitResetQuery,
    CircuitTransitionsQuery,
    EstimateQuery,
    Query,
    QueryRejected,
    parse_query,
)
from sluice_sidecar.api.keys import STATE
from sluice_sidecar.contract.model import ConfigRejected
from sluice_sidecar.observability.prometheus import CONTENT_TYPE_LATEST
from sluice_sidecar.service.provider_keys import key_watch_lifespan, missing_keys, missing_keys_of
from sluice_sidecar.service.state import SidecarState

ADMIN_BODY_LIMIT = 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Q = TypeVar("Q", bound=Query)


def _printable(value: Any) -> Any:
    """The value with every string made valid UTF-8 (undecodable bytes as ``\\xNN`` escapes)."""
    if isinstance(value, str):
        try:  # aiohttp kept undecodable header bytes as surrogates: show those bytes
            raw = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = value.encode("utf-8", "backslashreplace")
        return raw.decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {_printable(key): _printable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(item) for item in value]
    return value


def _json(data: object, status: int = 200) -> web.Response:
    try:
        body = orjson.dumps(data, option=orjson.OPT_INDENT_2)
    except orjson.JSONEncodeError:
        # A string kept from a header that was not UTF-8 (e.g. a session id): show it escaped
        # rather than fail the whole answer.
        body = orjson.dumps(_printable(data), option=orjson.OPT_INDENT_2)
    return web.Response(status=status, body=body, content_type="application/json")


def _query(model: type[Q], request: web.Request) -> Q:
    try:
        return parse_query(model, request.query)
    except QueryRejected as error:
        body = {"error": f"invalid query parameters: {error}", "problems": error.problems}
        raise web.HTTPBadRequest(
            text=orjson.dumps(body).decode(), content_type="application/json"
        ) from error


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own refusals (no route, method, body too large) as JSON errors."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400 or error.content_type == "application/json":
            raise
        message = (error.text or error.reason).removeprefix(f"{error.status}: ")
        headers = {"allow": error.headers["allow"]} if "allow" in error.headers else None
        return web.json_response({"error": message}, status=error.status, headers=headers)


@web.middleware
async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/admin/"):
        return await handler(request)
    token = request.app[STATE].settings.admin_token
    if token is None:
        return _json(
            {
                "error": "the admin API is disabled: no admin token is configured "
                "(set SLUICE_ADMIN_TOKEN or --admin-token-file)"
            },
            status=403,
        )
    # aiohttp decodes header bytes that are not UTF-8 with surrogateescape: encode them back
    # the same way, so any bytes compare (and fail) instead of raising.
    offered = request.headers.get("authorization", "").encode("utf-8", "surrogateescape")
    expected = f"Bearer {token.get_secret_value()}".encode()
    if not hmac.compare_digest(offered, expected):
        return web.Response(
            status=401,
            body=orjson.dumps({"error": "missing or wrong admin bearer token"}),
            content_type="application/json",
            headers={"www-authenticate": 'Bearer realm="sluice-admin"'},
        )
    return await handler(request)


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.runtime is None:
        return _json({"status": "not ready", "reason": "no configuration loaded"}, status=503)
    return _json({"status": "ready", "version": state.version})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[STATE].metrics.exposition()
    return web.Response(body=body, headers={"content-type": CONTENT_TYPE_LATEST})


async def get_config(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.runtime is None:
        return _json({"version": None, "config": None})
    config = state.runtime.config
    return _json(
        {"version": state.version, "config": config.model_dump(mode="json", by_alias=True)}
    )


async def put_config(request: web.Request) -> web.Response:
    state: SidecarState = request.app[STATE]
    try:
        document = orjson.loads(await request.read())
    except orjson.JSONDecodeError as error:
        return _json({"error": "invalid configuration", "problems": [f"not JSON: {error}"]}, 400)
    # The answers name the keys the configuration needs that this Pod has not mounted.
    secrets_dir = state.settings.secrets_dir
    try:
        result = state.apply_document(document, source="PUT /admin/config")
    except ConfigRejected as error:
        return _json(
            {
                "error": "invalid configuration",
                "problems": error.problems,
                "activeVersion": state.version,
                "missingKeys": [k.as_json() for k in missing_keys_of(document, secrets_dir)],
            },
            status=400,
        )
    answer: dict[str, Any] = {
        "version": result.version,
        "previousVersion": result.previous_version,
        "changed": result.changed,
    }
    assert state.runtime is not None  # just applied
    if missing := missing_keys(state.runtime.config, secrets_dir):  # only when some are
        answer["missingKeys"] = [k.as_json() for k in missing]
    return _json(answer)


async def get_stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return _json(
        {
            "version": state.version,
            "uptimeSeconds": round(time.time() - state.started_at, 1),
            "calls": state.stats.snapshot(),
        }
    )


async def get_usage(request: web.Request) -> web.Response:
    state = request.app[STATE]
    workload = state.runtime.config.workload.identity if state.runtime else None
    rules = state.runtime.budget_rules if state.runtime else ()
    budgets = [row.as_json() for row in await state.budgets.status(rules)]
    prices = state.runtime.prices.describe() if state.runtime else None
    report = {"workload": workload, **state.usage.snapshot(), "budgets": budgets}
    missing = (
        missing_keys(state.runtime.config, state.settings.secrets_dir) if state.runtime else []
    )
    return _json({**report, "prices": prices, "missingKeys": [k.as_json() for k in missing]})


async def get_budgets(request: web.Request) -> web.Response:
    state = request.app[STATE]
    rules = state.runtime.budget_rules if state.runtime else ()
    return _json({"budgets": [row.as_json() for row in await state.budgets.status(rules)]})


async def get_cache(request: web.Request) -> web.Response:
    state = request.app[STATE]
    spec = state.runtime.config.cache if state.runtime else None
    entries, size = state.memory_cache.size()
    backend = state.cache_backend(spec).name if spec is not None else None
    return _json(
        {
            "enabled": bool(spec and spec.enabled),
            "backend": backend,
            "memory": {
                "entries": entries,
                "bytes": size,
                "maxEntries": state.memory_cache.max_entries,
                "maxBytes": state.memory_cache.max_bytes,
            },
            **state.cache_stats.as_json(),
        }
    )


async def get_estimate(request: web.Request) -> web.Response:
    query = _query(EstimateQuery, request)
    prediction = request.app[STATE].latency.predict(
        query.provider, query.operation, query.prompt_tokens
    )
    return _json(query.model_dump(by_alias=True) | prediction.as_json())


async def get_inflight(request: web.Request) -> web.Response:
    now = asyncio.get_running_loop().time()
    return _json(request.app[STATE].latency.in_flight.snapshot(now))


async def get_batching(request: web.Request) -> web.Response:
    state = request.app[STATE]
    queue = state.queue
    return _json(state.batch_stats.as_json(depth=queue.depth, in_flight=queue.in_flight))


async def get_suggestions(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.runtime is None:
        return _json({"calls": 0, "suggestions": []})
    return _json(state.advisor.report(state.runtime.prices))


async def list_sessions(request: web.Request) -> web.Response:
    return _json({"sessions": request.app[STATE].sessions.ids()})


async def get_session(request: web.Request) -> web.Response:
    session_id = request.match_info["session"]
    report = request.app[STATE].sessions.report(session_id)
    if report is None:
        return _json({"error": f"no calls recorded for session {session_id!r}"}, status=404)
    return _json(report)


async def get_circuits(request: web.Request) -> web.Response:
    breakers = request.app[STATE].breakers.all()
    return _json({"circuits": [b.snapshot() for b in breakers]})


async def get_circuit_transitions(request: web.Request) -> web.Response:
    query = _query(CircuitTransitionsQuery, request)
    return _json(request.app[STATE].breakers.transitions.answer(query.after))


async def reset_circuits(request: web.Request) -> web.Response:
    query = _query(CircuitResetQuery, request)
    count = request.app[STATE].breakers.reset(query.provider, query.model)
    return _json({"reset": count})


async def get_openapi(request: web.Request) -> web.Response:
    return _json(openapi_document())


def build_admin_app(state: SidecarState) -> web.Application:
    app = web.Application(
        middlewares=[json_errors, require_token], client_max_size=ADMIN_BODY_LIMIT
    )
    app[STATE] = state
    app.cleanup_ctx.append(key_watch_lifespan(state))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/admin/openapi.json", get_openapi)
    app.router.add_get("/admin/config", get_config)
    app.router.add_put("/admin/config", put_config)
    app.router.add_get("/admin/stats", get_stats)
    app.router.add_get("/admin/usage", get_usage)
    app.router.add_get("/admin/budgets", get_budgets)
    app.router.add_get("/admin/cache", get_cache)
    app.router.add_get("/admin/batching", get_batching)
    app.router.add_get("/admin/estimate", get_estimate)
    app.router.add_get("/admin/inflight", get_inflight)
    app.router.add_get("/admin/suggestions", get_suggestions)
    app.router.add_get("/admin/sessions", list_sessions)
    app.router.add_get("/admin/sessions/{session}", get_session)
    app.router.add_get("/admin/circuits", get_circuits)
    app.router.add_get("/admin/circuits/transitions", get_circuit_transitions)
    app.router.add_post("/admin/circuits/reset", reset_circuits)
    return app
