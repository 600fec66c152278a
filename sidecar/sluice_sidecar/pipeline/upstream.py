"""The last stage: turn the call into a provider request and send it through the transport.

Here the operation's preset and the provider's model map are applied (both can depend on the
provider, so they are applied per provider, once, and cached on the call), the provider's key
replaces the caller's when one is configured, and the sidecar's own headers are dropped.
Unknown request fields are never touched: the body is re-encoded only when a value changed,
otherwise the caller's bytes go upstream as they came.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson

from sluice_sidecar.economics.unanswered import LostAttempt, may_be_billed
from sluice_sidecar.errors import TransientUpstreamError, UpstreamError
from sluice_sidecar.observability import otel
from sluice_sidecar.pipeline.call import Call, Next
from sluice_sidecar.pipeline.runtime import Provider, apply_preset
from sluice_sidecar.transports.base import Transport, UpstreamReply, UpstreamRequest

# Request headers never forwarded: connection-level ones, ours (x-llm-*), and ones aiohttp sets.
DROPPED_REQUEST_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "accept-encoding",
        "x-llm-operation",
        "x-llm-session",
        "x-llm-priority",
        "x-llm-cache",
        "x-llm-timeout",
    }
)
CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key", "api-key"})
# A provider with its own key drops the caller's too.
DROPPED_WITH_OWN_KEY = DROPPED_REQUEST_HEADERS | CREDENTIAL_HEADERS
PRESET_KINDS = frozenset({"chat", "completions", "messages"})


def upstream_url(provider: Provider, call: Call) -> str:
    # OpenAI-style base URLs already end in /v1; Anthropic's is the host root.
    path = (
        call.path[3:] if provider.family == "openai" and call.path.startswith("/v1/") else call.path
    )
    url = provider.base_url + path
    return f"{url}?{call.query}" if call.query else url


def upstream_headers(call: Call, provider: Provider) -> dict[str, str]:
    drop = DROPPED_WITH_OWN_KEY if provider.auth_headers else DROPPED_REQUEST_HEADERS
    headers = {k: v for k, v in call.client_headers.items() if k not in drop}
    headers.update(provider.extra_headers)
    headers.update(provider.auth_headers)
    return headers


def upstream_body(call: Call, provider: Provider) -> bytes | None:
    if call.body is None:
        return call.raw_body
    cache_key = f"{provider.type}:{provider.name}"
    if cache_key in call.prepared_bodies:
        return call.prepared_bodies[cache_key]
    body = call.body
    changed = False
    if call.kind in PRESET_KINDS and call.operation.has_preset:
        body = dict(body)
        field = provider.max_tokens_field if call.kind == "chat" else "max_tokens"
        changed = apply_preset(body, call.operation, field)
    if call.model is not None and (mapped := provider.upstream_model(call.model)) != call.model:
        body = dict(body) if body is call.body else body
        body["model"] = mapped
        changed = True
    prepared = orjson.dumps(body) if changed else call.raw_body
    call.prepared_bodies[cache_key] = prepared
    return prepared


@contextlib.asynccontextmanager
async def attempt_limit(seconds: float | None) -> AsyncIterator[None]:
    """An adaptive attempt timeout: past it the attempt is abandoned as a transient failure
    (retried, counted against the breaker); the call's own deadline still wraps it."""
    if seconds is None:
        yield
        return
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as error:
        raise TransientUpstreamError(
            f"attempt abandoned after {seconds:.2f}s (adaptive attempt timeout)",
            reason="attempt timeout",
        ) from error


class UpstreamStage:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def __call__(self, call: Call, next_stage: Next | None = None) -> UpstreamReply:
        provider = call.provider
        assert provider is not None
        request = UpstreamRequest(
            method="GET" if call.body is None else "POST",
            url=upstream_url(provider, call),
            headers=upstream_headers(call, provider),
            body=upstream_body(call, provider),
            stream=call.stream,
            secrets=tuple(provider.auth_headers.values()),
        )
        # One span per attempt; the provider gets its context as traceparent.
        model = provider.upstream_model(call.model) if call.model else None
        attempt = otel.current_call().attempt(provider, model, call.attempts)
        loop = asyncio.get_running_loop()
        sent = loop.time()
        if call.first_attempt_at is None:
            call.first_attempt_at = sent
        limit = call.attempt_timeouts.get(provider.name)
        try:
            if limit is None:  # the usual case: no context manager to enter and leave
                return await attempt.send(self._transport.send, request)
            async with attempt_limit(limit):
                return await attempt.send(self._transport.send, request)
        except UpstreamError as error:
            if may_be_billed(error):  # sent, and no answer came back: it may still be billed
                call.lost_attempts.append(LostAttempt(provider.name, model, error.reason))
            raise
        finally:  # Server-Timing "upstream": every attempt, up to a stream's first chunk
            call.upstream_s += loop.time() - sent
