"""The handles the proxy and the stages hold, and the do-nothing ones used when export is off.

``CallHandle`` here does nothing; ``calls._LiveHandle`` records. ``Attempt`` is one request to
a provider (a CLIENT span). The ``*View`` protocols say what the telemetry reads of the
pipeline's objects, so this package does not import the pipeline.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, StatusCode

from sluice_sidecar.observability.otel import attributes as attr

R = TypeVar("R")  # an upstream request: has ``headers``
A = TypeVar("A")  # its reply: has ``status``, ``streaming`` and ``on_close``


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class CallView(Protocol):
    """What the telemetry reads of a pipeline ``Call`` when it starts."""

    @property
    def api(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def model(self) -> str | None: ...
    @property
    def stream(self) -> bool: ...
    @property
    def body(self) -> Mapping[str, Any] | None: ...
    @property
    def client_headers(self) -> Mapping[str, str]: ...
    @property
    def operation(self) -> _Named: ...


class ProviderView(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def family(self) -> str: ...
    @property
    def base_url(self) -> str: ...


class UsageView(Protocol):
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...


class Attempt:
    """One request to a provider: a CLIENT span under the call's span."""

    __slots__ = ("_on_stream", "_span")

    def __init__(self, span: Span | None, on_stream: Callable[[bytes], None] | None = None) -> None:
        self._span = span
        self._on_stream = on_stream  # given a streamed reply's first chunk (its model)

    def inject(self, headers: MutableMapping[str, str]) -> None:
        """Put this attempt's ``traceparent`` (and ``tracestate``) into the provider's headers."""
        if self._span is not None:
            propagate.inject(headers, context=trace.set_span_in_context(self._span))

    async def send(self, send: Callable[[R], Awaitable[A]], request: R) -> A:
        """``await send(request)`` as this attempt: the request's headers carry its context; the
        span ends with the answer (a stream's when it closes) or with the error raised."""
        if self._span is None and self._on_stream is None:
            return await send(request)
        self.inject(request.headers)  # type: ignore[attr-defined]
        try:
            reply = await send(request)
        except Exception as error:
            self.end(
                getattr(error, "upstream_status", None),
                getattr(error, "code", None) or type(error).__name__,
            )
            raise
        except BaseException:  # cancelled: the caller left or the deadline passed
            self.end(error_type="cancelled")
            raise
        status = getattr(reply, "status", None)
        if getattr(reply, "streaming", False):
            if self._on_stream is not None:
                self._on_stream(getattr(reply, "first_chunk", b""))
            reply.on_close.append(lambda: self.end(status))  # type: ignore[attr-defined]
        else:
            self.end(status)
        return reply

    def end(self, status: int | None = None, error_type: str | None = None) -> None:
        span, self._span = self._span, None
        if span is None:
            return
        if status is not None:
            span.set_attribute(attr.HTTP_STATUS, status)
        if error_type is not None:
            span.set_attribute(attr.ERROR_TYPE, error_type)
            span.set_status(StatusCode.ERROR)
        span.end()


NO_ATTEMPT = Attempt(None)


class CallHandle:
    """The do-nothing handle (export off, or no call); ``_LiveHandle`` records."""

    __slots__ = ()

    def attempt(self, provider: ProviderView, model: str | None, number: int) -> Attempt:
        return NO_ATTEMPT

    def batched(self, others: Sequence[CallHandle]) -> None: ...
    def cache_hit(self) -> None: ...
    def coalesced(self) -> None: ...
    def queue_waited(self, seconds: float, priority: str) -> None: ...
    def retry(self, provider: str, reason: str, delay_s: float, attempt: int) -> None: ...
    def breaker_refused(self, provider: str) -> None: ...
    def fallback(self, from_provider: str, to_provider: str, reason: str) -> None: ...
    def budget_over(self, budget: str, reason: str, enforcement: str) -> None: ...
    def chunk(self) -> None: ...
    def answer(self, response_model: str | None, output: Any = None) -> None: ...
    def failed(self, error_type: str) -> None: ...

    def end(
        self,
        status: int,
        *,
        error_type: str | None = None,
        provider: ProviderView | None = None,
        usage: UsageView | None = None,
        response_model: str | None = None,
        cost: Decimal | None = None,
        cache_status: str | None = None,
        output: Any = None,
    ) -> None: ...


NO_CALL = CallHandle()
CURRENT: contextvars.ContextVar[CallHandle] = contextvars.ContextVar(
    "sluice_otel_call", default=NO_CALL
)


def current_call() -> CallHandle:
    """The handle of the call the running task works on (the do-nothing one outside a call)."""
    return CURRENT.get()


def log_ids() -> tuple[str, str] | None:
    """Trace and span id (hex) of the current span, for the JSON logs; None outside one."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)
