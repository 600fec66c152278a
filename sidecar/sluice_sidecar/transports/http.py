"""The real transport: one shared aiohttp ClientSession with a pooled keep-alive connector.

Calls in flight (a stream until it is closed) are bounded by ``connection_limit``; one past it
is refused at once (``BulkheadFull``, 503 with Retry-After in the caller's format), never queued
behind the others: a queued stream would wait a whole stream for a connection. aiohttp's own
pool limit is therefore off.

This module is the only place provider calls touch ``aiohttp.ClientSession`` (the other is
``report``, the final usage POST) and the only place aiohttp client errors become sidecar
errors. The session outlives configuration swaps, so connections stay warm and in-flight calls
are never cut by a reload.

What an upstream sends is bounded here: a non-stream answer is read incrementally and refused
past ``max_answer_bytes`` (decompressed; an error body past ``MAX_ERROR_BODY`` is cut), a
stream must be ``text/event-stream`` and start with a well-formed event within
``MAX_FIRST_EVENT_BYTES``, may stay silent at most ``stream_idle_timeout_s`` between chunks,
and must end with its terminator. Redirects are not followed (the key would go with them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncIterator
from typing import NoReturn

import aiohttp
import orjson

from sluice_sidecar.errors import (
    BulkheadFull,
    PermanentUpstreamError,
    TransientUpstreamError,
    classify_upstream_status,
    reason_for_status,
)
from sluice_sidecar.observability.redaction import credential_values, redact, redact_bytes
from sluice_sidecar.resilience.ratelimit_headers import (
    requested_wait_seconds,
    sanitise_wait_headers,
)
from sluice_sidecar.transports.base import UpstreamReply, UpstreamRequest
from sluice_sidecar.transports.proxies import EnvProxies
from sluice_sidecar.transports.sse import StreamCheck

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
MAX_DETAIL_CHARS = 1000  # of a provider's error message, in our own messages and logs
DEFAULT_MAX_ANSWER_BYTES = 32 * 1024 * 1024  # a non-stream answer, decompressed
DEFAULT_STREAM_IDLE_TIMEOUT_S = 300.0  # silence allowed between two chunks of a stream
# A stream's first event must arrive within this many bytes (comments before it included).
MAX_FIRST_EVENT_BYTES = 64 * 1024
END_GRACE_S = 0.1  # after a stream's terminator, the wait for its HTTP answer to end
EVENT_STREAM = "text/event-stream"
DEFAULT_CONNECTION_LIMIT = 1000  # calls in flight at once, streams included
LIMIT_RETRY_AFTER_S = 1.0
NO_USER_AGENT = ("User-Agent",)


def relayable_headers(headers: aiohttp.typedefs.LooseHeaders) -> dict[str, str]:
    # Each name lowered once: this runs on every answer's headers.
    return {
        name: value
        for key, value in headers.items()  # type: ignore[union-attr]
        if (name := key.lower()) not in HOP_BY_HOP
    }


class HttpTransport:
    def __init__(
        self,
        *,
        connection_limit: int = DEFAULT_CONNECTION_LIMIT,
        connect_timeout_s: float = 10.0,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        stream_idle_timeout_s: float = DEFAULT_STREAM_IDLE_TIMEOUT_S,
    ) -> None:
        self._connector_limit = connection_limit
        self._connect_timeout_s = connect_timeout_s
        self._max_answer_bytes = max_answer_bytes
        self._stream_idle_timeout_s = stream_idle_timeout_s
        self._session: aiohttp.ClientSession | None = None
        self.in_flight = 0
        self._proxies = EnvProxies({})

    async def start(self) -> None:
        # limit=0: aiohttp's pool would queue a call past its limit silently; the bound is
        # ours (``send``), and refuses instead.
        # A CA bundle named by the environment (SSL_CERT_FILE / SSL_CERT_DIR: a corporate CA)
        # is read now: aiohttp's own default context was made at import, before any of it.
        # Without one, that default context (the same system bundle) serves, not a second copy.
        named = any(os.environ.get(name) for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"))
        tls: ssl.SSLContext | bool = ssl.create_default_context() if named else True
        # HTTPS_PROXY / HTTP_PROXY / NO_PROXY: corporate egress goes through a proxy.
        self._proxies = EnvProxies()
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30, ssl=tls)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout_s),
            auto_decompress=True,
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
        if self.in_flight >= self._connector_limit:
            raise BulkheadFull(
                f"{self._connector_limit} upstream calls already in flight in this sidecar"
                " (SLUICE_UPSTREAM_CONNECTION_LIMIT)",
                retry_after=LIMIT_RETRY_AFTER_S,
            )
        self.in_flight += 1
        try:
            reply = await self._send(self._session, request)
        except BaseException:
            self.in_flight -= 1
            raise
        if reply.streaming:
            reply.on_close.append(self._release)  # the slot is held until the stream ends
        else:
            self.in_flight -= 1
        return reply

    def _release(self) -> None:
        self.in_flight -= 1

    async def _send(
        self, session: aiohttp.ClientSession, request: UpstreamRequest
    ) -> UpstreamReply:
        # The credentials to mask (``_secrets``) are gathered only when an error needs them.
        try:
            response = await _request(session, request, self._proxies.for_url(request.url))
        except aiohttp.ClientConnectorError as error:
            secrets = _secrets(request)
            raise TransientUpstreamError(
                f"cannot connect to upstream {error.host}:{error.port}: {describe(error, secrets)}",
                reason="connection error",
                sent=False,
            ) from error
        except (aiohttp.ClientError, TimeoutError) as error:
            raise TransientUpstreamError(
                f"upstream connection failed: {describe(error, _secrets(request))}",
                reason="connection error",
            ) from error
        try:
            if response.status >= 300:
                await _raise_for_status(response, _secrets(request))
            if request.stream:
                return await _stream_reply(response, self._stream_idle_timeout_s)
            return await _json_reply(response, self._max_answer_bytes)
        except BaseException:
            _finish(response)
            raise


async def _request(
    session: aiohttp.ClientSession, request: UpstreamRequest, proxy: str | None
) -> aiohttp.ClientResponse:
    # A connection closed before any answer (a pooled keep-alive connection the upstream had
    # closed, or a provider that dropped the call) is not sent again here: the provider may
    # have processed it, so the retry stage decides, counts the attempt and charges it.
    return await session.request(
        request.method,
        request.url,
        headers=request.headers,
        data=request.body,
        allow_redirects=False,
        proxy=proxy,
        # aiohttp's own User-Agent is never sent; skipping it costs a header copy per call,
        # paid only when the caller sent none (SDKs always send theirs).
        skip_auto_headers=None if "user-agent" in request.headers else NO_USER_AGENT,
    )


def _secrets(request: UpstreamRequest) -> list[str]:
    """Every credential the request carries: the provider's key and any caller's key."""
    secrets = [*request.secrets, *credential_values(request.headers)]
    # A bearer key is known with and without its scheme; mask the longer form first.
    secrets += [value.partition(" ")[2] for value in request.secrets if " " in value]
    return sorted(set(secrets), key=len, reverse=True)


def describe(error: BaseException, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Safe text for a client error: its class, status and redacted message, never its repr.

    A ``ClientResponseError``'s repr (and its ``request_info``) carries the request headers,
    the provider key among them; only its status and message are used.
    """
    name = type(error).__name__
    if isinstance(error, aiohttp.ClientResponseError):
        message = error.message if isinstance(error.message, str) else ""
        return redact(f"{name} {error.status}: {message}".rstrip(": "), secrets)
    if isinstance(error, aiohttp.ClientConnectorError):
        return redact(f"{name}: {error.strerror or error.os_error}", secrets)
    text = str(error)
    return redact(f"{name}: {text}" if text else name, secrets)


async def _raise_for_status(response: aiohttp.ClientResponse, secrets: list[str]) -> None:
    if response.status < 400:
        # Not followed (the provider key would go along) and not relayed (the caller's client
        # might follow it): a provider that redirects is misconfigured, which is permanent.
        target = redact(response.headers.get("location", "nowhere")[:200])
        raise PermanentUpstreamError(
            f"upstream answered a redirect ({response.status}) to {target}, which the sidecar"
            " does not follow; check the provider's baseUrl",
            reason="redirect",
        )
    body = await _read_error_body(response)
    # Some providers quote the key they rejected: it must not reach the caller.
    body = redact_bytes(body, secrets) if body is not None else None
    headers = relayable_headers(response.headers)
    retry_after = requested_wait_seconds(headers)
    sanitise_wait_headers(headers)
    error_class = classify_upstream_status(response.status)
    # The provider's body is relayed whole; our message (and the log lines quoting it) only
    # carries the start of its text.
    detail = redact(_error_message(body) or response.reason or "", secrets)[:MAX_DETAIL_CHARS]
    raise error_class(
        f"upstream answered {response.status}: {detail}".rstrip(": "),
        reason=reason_for_status(response.status),
        upstream_status=response.status,
        body=body,
        headers=headers,
        retry_after=retry_after,
    )


async def _read_error_body(response: aiohttp.ClientResponse) -> bytes | None:
    """The provider's whole error body, or None when it is too long or broke off.

    A cut body is not relayed: the caller's SDK would fail to parse it. Without one, the
    caller gets the sidecar's own error with the provider's status, in its API format.
    """
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > MAX_ERROR_BODY:
                return None
            parts.append(chunk)
    except (aiohttp.ClientError, TimeoutError):
        return None
    return b"".join(parts)


def _error_message(body: bytes | None) -> str | None:
    if not body:
        return None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return None


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole (decompressed) answer, read chunk by chunk and refused once past ``limit``."""
    if response.content_length is not None and response.content_length > limit:
        _too_large(limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            # Freed now: the error's traceback keeps this frame alive until the cycle
            # collector runs, and with it up to ``limit`` bytes per refused answer.
            parts.clear()
            _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def _too_large(limit: int) -> NoReturn:
    # Permanent: the same request would bring the same answer back, and each retry or
    # fallback would pay for downloading (or inflating) it again. The breaker counts it as
    # an answer, not an outage.
    raise PermanentUpstreamError(
        f"upstream answer exceeds the sidecar's limit of {limit} bytes", reason="answer too large"
    )


async def _json_reply(response: aiohttp.ClientResponse, limit: int) -> UpstreamReply:
    try:
        body = await _read_bounded(response, limit)
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


class _Silence(Exception):
    """Set on a stream's reader by its idle limit: the pending read raises it."""


class IdleLimit:
    """A stream's idle limit: one timer for the whole stream, not a timeout scope per chunk.

    Silence is counted from when the relay asked for the next chunk (``reading``), as a scope
    around each read would count it, so a chunk costs one clock read. The timer is re-armed
    only when it fires before the limit (every ``idle_s`` at most); past it, the pending read
    raises ``_Silence``.
    """

    __slots__ = ("_clock", "_content", "_handle", "_loop", "idle_s", "since")

    def __init__(self, content: aiohttp.StreamReader, idle_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._clock = self._loop.time
        self._content = content
        self.idle_s = idle_s
        self.since: float | None = None  # when the read under way started; None: no read
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(idle_s, self._fire)

    def reading(self) -> None:
        self.since = self._clock()

    def _fire(self) -> None:
        now = self._clock()
        since = self.since
        if since is not None and now - since >= self.idle_s:
            self._handle = None
            self._content.set_exception(_Silence())
            return
        self._handle = self._loop.call_at(
            (now if since is None else since) + self.idle_s, self._fire
        )

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


async def _next_chunk(
    content: aiohttp.StreamReader, idle: IdleLimit, started: bool
) -> bytes | None:
    """The stream's next chunk, None at its end; silence past the idle limit is an error."""
    idle.reading()
    try:
        return await content.readany() or None
    except _READ_ERRORS as error:
        raise _read_failure(error, idle, started) from error
    finally:
        idle.since = None


_READ_ERRORS = (_Silence, aiohttp.ClientError, asyncio.IncompleteReadError)


def _read_failure(error: BaseException, idle: IdleLimit, started: bool) -> TransientUpstreamError:
    """The upstream error a failed read of a stream is (one of ``_READ_ERRORS``)."""
    if isinstance(error, _Silence):
        return TransientUpstreamError(
            f"upstream stream sent nothing for {idle.idle_s:g}s", reason="stream idle"
        )
    where = "mid-way" if started else "before its first event"
    return TransientUpstreamError(
        f"upstream stream broke {where}: {describe(error)}", reason="broken stream"
    )


def _invalid_stream(detail: str) -> NoReturn:
    raise TransientUpstreamError(
        f"upstream answered a stream request with {detail}", reason="invalid stream"
    )


async def _stream_reply(response: aiohttp.ClientResponse, idle_s: float) -> UpstreamReply:
    # Nothing but an event stream is relayed (or cached) as one: an HTML page or a JSON
    # answer to stream: true is a broken upstream, retried like one.
    if response.content_type != EVENT_STREAM:
        _invalid_stream(f"{response.content_type!r}, not {EVENT_STREAM}")
    content = response.content
    idle = IdleLimit(content, idle_s)
    try:
        check, first_chunk = await _first_event(content, idle)
    except BaseException:
        idle.cancel()
        raise

    def close() -> None:
        idle.cancel()
        _finish(response)

    return UpstreamReply(
        status=response.status,
        headers=relayable_headers(response.headers),
        first_chunk=first_chunk,
        chunks=_rest(content, check, idle),
        on_close=[close],
    )


async def _first_event(content: aiohttp.StreamReader, idle: IdleLimit) -> tuple[StreamCheck, bytes]:
    """The bytes up to and including the stream's first data event, checked."""
    check = StreamCheck()
    received = bytearray()
    while not check.data_events:
        chunk = await _next_chunk(content, idle, started=False)
        if chunk is None:
            if not received:
                raise TransientUpstreamError(
                    "upstream closed the stream without data", reason="empty stream"
                )
            _invalid_stream("a stream that ended before its first event")
        received += chunk
        check.feed(chunk)
        if not check.well_formed:
            _invalid_stream("bytes that are not a well-formed event stream")
        if len(received) > MAX_FIRST_EVENT_BYTES and not check.data_events:
            _invalid_stream(f"no event in its first {MAX_FIRST_EVENT_BYTES} bytes")
    check.relaying()
    return check, bytes(received)


def _finish(response: aiohttp.ClientResponse) -> None:
    # A stream read to its end returns its connection to the pool; one abandoned mid-way
    # (client gone, deadline) must close it, which also stops the provider's generation.
    if response.content.at_eof():
        response.release()
    else:
        response.close()


async def _rest(
    content: aiohttp.StreamReader, check: StreamCheck, idle: IdleLimit
) -> AsyncIterator[bytes]:
    """Relay the chunks after the first event; a stream that stops short is an error.

    A connection that breaks, a silence past the idle limit, or an end without the
    terminator each become a transient upstream error, which the proxy turns into the
    caller's error event (the stream already started, so there is no retry). Once the
    terminator arrived the answer is complete: the caller's stream ends then, whether or not
    the upstream also ends its HTTP answer (SDKs read to the end after ``[DONE]``).
    """
    # ``_next_chunk`` inlined, and the methods looked up once: a coroutine and a few lookups
    # less per chunk, on the path every relayed chunk takes.
    read, feed, clock = content.readany, check.feed, asyncio.get_running_loop().time
    while not check.terminated:
        idle.since = clock()  # IdleLimit.reading
        try:
            chunk = await read()
        except _READ_ERRORS as error:
            raise _read_failure(error, idle, started=True) from error
        finally:
            idle.since = None
        if not chunk:
            raise TransientUpstreamError(
                "upstream stream ended without its final event ([DONE] or message_stop)",
                reason="broken stream",
            )
        feed(chunk)
        yield chunk
    # The end of the HTTP answer normally follows at once; waiting a moment for it lets the
    # connection be reused. Whatever comes instead (data after the end, silence) is dropped.
    idle.cancel()
    with contextlib.suppress(TimeoutError, aiohttp.ClientError, asyncio.IncompleteReadError):
        async with asyncio.timeout(END_GRACE_S):
            await content.readany()
