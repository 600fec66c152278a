"""The real transport: one shared aiohttp ClientSession with a pooled keep-alive connector.

This module is the only place that touches ``aiohttp.ClientSession`` and the only place aiohttp
client errors become sidecar errors. The session outlives configuration swaps, so connections
stay warm and in-flight calls are never cut by a reload.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import orjson

from sluice_sidecar.errors import (
    TransientUpstreamError,
    classify_upstream_status,
    reason_for_status,
)
from sluice_sidecar.pipeline.ratelimit_headers import (
    requested_wait_seconds,
    sanitise_wait_headers,
)
from sluice_sidecar.redaction import credential_values, redact, redact_bytes
from sluice_sidecar.transports.base import UpstreamReply, UpstreamRequest

# Connection-level headers that must not be relayed back to the caller.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "proxy-connection",
        "upgrade",
        "trailer",
        "te",
        "server",
        "date",
    }
)
MAX_ERROR_BODY = 64 * 1024


def relayable_headers(headers: aiohttp.typedefs.LooseHeaders) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}  # type: ignore[union-attr]


class HttpTransport:
    def __init__(self, *, connection_limit: int = 1000, connect_timeout_s: float = 10.0) -> None:
        self._connector_limit = connection_limit
        self._connect_timeout_s = connect_timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._connector_limit, ttl_dns_cache=300, keepalive_timeout=30
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout_s),
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
            # A proxy keeps no cookies: one caller's Set-Cookie must never reach another, and
            # the jar's per-request filtering is wasted work.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, request: UpstreamRequest) -> UpstreamReply:
        assert self._session is not None, "HttpTransport.start() was not awaited"
        try:
            response = await self._session.request(
                request.method, request.url, headers=request.headers, data=request.body
            )
        except aiohttp.ClientConnectorError as error:
            raise TransientUpstreamError(
                f"cannot connect to upstream {error.host}:{error.port}: {describe(error)}",
                reason="connection error",
            ) from error
        except (aiohttp.ClientError, TimeoutError) as error:
            raise TransientUpstreamError(
                f"upstream connection failed: {describe(error)}", reason="connection error"
            ) from error
        try:
            if response.status >= 300:
                await _raise_for_status(response, credential_values(request.headers))
            if request.stream:
                return await _stream_reply(response)
            return await _json_reply(response)
        except BaseException:
            response.release()
            raise


def describe(error: BaseException) -> str:
    """Safe text for a client error: its class, status and redacted message, never its repr.

    A ``ClientResponseError``'s repr (and its ``request_info``) carries the request headers,
    the provider key among them; only its status and message are used.
    """
    name = type(error).__name__
    if isinstance(error, aiohttp.ClientResponseError):
        message = error.message if isinstance(error.message, str) else ""
        return redact(f"{name} {error.status}: {message}".rstrip(": "))
    if isinstance(error, aiohttp.ClientConnectorError):
        return redact(f"{name}: {error.strerror or error.os_error}")
    text = str(error)
    return redact(f"{name}: {text}" if text else name)


async def _raise_for_status(response: aiohttp.ClientResponse, secrets: list[str]) -> None:
    try:
        body = await response.content.read(MAX_ERROR_BODY)
    except (aiohttp.ClientError, TimeoutError):
        body = b""
    # Some providers quote the key they rejected: it must not reach the caller.
    body = redact_bytes(body, secrets)
    headers = relayable_headers(response.headers)
    retry_after = requested_wait_seconds(headers)
    sanitise_wait_headers(headers)
    error_class = classify_upstream_status(response.status)
    detail = redact(_error_message(body) or response.reason or "", secrets)
    raise error_class(
        f"upstream answered {response.status}: {detail}".rstrip(": "),
        reason=reason_for_status(response.status),
        upstream_status=response.status,
        body=body,
        headers=headers,
        retry_after=retry_after,
    )


def _error_message(body: bytes) -> str | None:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return None


async def _json_reply(response: aiohttp.ClientResponse) -> UpstreamReply:
    try:
        body = await response.read()
    except (aiohttp.ClientError, TimeoutError) as error:
        raise TransientUpstreamError(
            f"upstream connection broke while sending its answer: {describe(error)}",
            reason="broken response",
        ) from error
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        preview = redact(body[:80].decode("utf-8", "replace"))
        raise TransientUpstreamError(
            f"upstream returned an answer that is not valid JSON: {preview!r}",
            reason="invalid response",
        ) from error
    return UpstreamReply(
        status=response.status,
        headers=relayable_headers(response.headers),
        body=body,
        json=document,
    )


async def _stream_reply(response: aiohttp.ClientResponse) -> UpstreamReply:
    chunks = response.content.iter_any().__aiter__()
    try:
        first = await chunks.__anext__()
    except StopAsyncIteration:
        first = b""
    except (aiohttp.ClientError, TimeoutError) as error:
        raise TransientUpstreamError(
            f"upstream stream broke before its first event: {describe(error)}",
            reason="broken stream",
        ) from error
    if not first:
        raise TransientUpstreamError(
            "upstream closed the stream without data", reason="empty stream"
        )
    return UpstreamReply(
        status=response.status,
        headers=relayable_headers(response.headers),
        first_chunk=first,
        chunks=_guarded(chunks),
        on_close=[lambda: _finish(response)],
    )


def _finish(response: aiohttp.ClientResponse) -> None:
    # A stream read to its end returns its connection to the pool; one abandoned mid-way
    # (client gone, deadline) must close it, which also stops the provider's generation.
    if response.content.at_eof():
        response.release()
    else:
        response.close()


async def _guarded(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Relay chunks; a connection that breaks mid-stream becomes a transient upstream error."""
    try:
        async for chunk in chunks:
            yield chunk
    except (aiohttp.ClientError, asyncio.IncompleteReadError) as error:
        raise TransientUpstreamError(
            f"upstream stream broke mid-way: {describe(error)}",
            reason="broken stream",
        ) from error
