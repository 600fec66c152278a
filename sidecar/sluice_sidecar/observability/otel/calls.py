"""Per-call telemetry: the one object the proxy and the stages talk to.

``CallTelemetry.start(call)`` opens a call's span (continuing the app's ``traceparent``) and
returns a ``CallHandle``; the stages reach the handle of the call they are working on with
``current_call()`` and report what happened (cache hit, coalescing, queue wait, retry,
breaker refusal, fallback, budget); the upstream stage opens one ``Attempt`` (a child span,
whose context goes to the provider as ``traceparent``) per request sent; the proxy reports
stream chunks and calls ``end`` once. ``end`` records the GenAI metrics. With export off,
every call gets the same do-nothing handle, so the hot path pays one attribute look-up.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, StatusCode

from sluice_sidecar.observability.otel import attributes as attr
from sluice_sidecar.observability.otel.handles import (
    CURRENT,
    NO_ATTEMPT,
    NO_CALL,
    Attempt,
    CallHandle,
    CallView,
    ProviderView,
    UsageView,
)
from sluice_sidecar.observability.otel.instruments import Instruments
from sluice_sidecar.observability.prometheus import reason_label

if TYPE_CHECKING:  # the SDK is imported only when export is on (the package's docstring)
    from sluice_sidecar.observability.otel.providers import Providers

CONTENT_LIMIT = 16 * 1024  # characters of opt-in prompt/completion content per span attribute


class CallTelemetry:
    """Process-wide: the providers, the instruments and the bounded metric values."""

    def __init__(self, providers: Providers | None = None, capture_content: bool = False) -> None:
        self.providers = providers
        self._tracer = providers.tracer if providers else None
        meter = providers.meter if providers else None
        self._instruments = Instruments(meter) if meter is not None else None
        self._capture = capture_content
        self._models = attr.BoundedValues()
        self._servers: dict[str, tuple[str, int] | None] = {}

    @property
    def enabled(self) -> bool:
        return self._tracer is not None or self._instruments is not None

    def start(self, call: CallView) -> CallHandle:
        if not self.enabled:
            return NO_CALL
        handle = _LiveHandle(self, call)
        handle.token = CURRENT.set(handle)
        return handle

    def model_value(self, model: str) -> str:
        return self._models(model)

    def server(self, base_url: str) -> tuple[str, int] | None:
        if base_url not in self._servers:
            if len(self._servers) >= attr.MAX_DISTINCT:
                return attr.server_of(base_url)
            self._servers[base_url] = attr.server_of(base_url)
        return self._servers[base_url]


class _LiveHandle(CallHandle):
    __slots__ = (
        "_attrs",
        "_batched",
        "_context_token",
        "_error_type",
        "_last_chunk",
        "_operation",
        "_output",
        "_provider",
        "_response_model",
        "_span",
        "_started",
        "_telemetry",
        "call",
        "token",
    )

    def __init__(self, telemetry: CallTelemetry, call: CallView) -> None:
        self._telemetry = telemetry
        self.call = call
        self.token: contextvars.Token[CallHandle] | None = None
        self._operation = attr.operation_name(call.kind)
        self._provider: ProviderView | None = None
        self._response_model: str | None = None
        self._output: Any = None
        self._error_type: str | None = None
        self._attrs: dict[str, Any] | None = None  # metric attributes, fixed at the first chunk
        self._started = time.perf_counter()
        self._last_chunk: float | None = None
        self._span: Span | None = None
        self._context_token: object | None = None
        self._batched: list[Span] = []  # the other callers' spans of a merged call this one sends
        tracer = telemetry._tracer
        if tracer is not None:
            parent = propagate.extract(call.client_headers)
            self._span = tracer.start_span(
                self._span_name(call.model),
                context=parent,
                kind=SpanKind.SERVER,
                attributes=self._start_attributes(),
            )
            self._context_token = otel_context.attach(trace.set_span_in_context(self._span, parent))

    def _span_name(self, model: str | None) -> str:
        return f"{self._operation} {model}" if model else self._operation

    def _start_attributes(self) -> dict[str, Any]:
        call = self.call
        found: dict[str, Any] = {
            attr.OPERATION_NAME: self._operation,
            attr.SLUICE_OPERATION: call.operation.name,
            attr.REQUEST_STREAM: call.stream,
        }
        if call.model:
            found[attr.REQUEST_MODEL] = call.model
        if self._telemetry._capture and call.body is not None:
            content = next(
                (call.body[k] for k in ("messages", "prompt", "input") if k in call.body), None
            )
            if content is not None:
                found[attr.INPUT_MESSAGES] = _content(content)
        return found

    # -- attempts and events ---------------------------------------------------------------

    def attempt(self, provider: ProviderView, model: str | None, number: int) -> Attempt:
        self._provider = provider
        on_stream = self._streamed if self.call.stream else None
        if self._span is None:
            return NO_ATTEMPT if on_stream is None else Attempt(None, on_stream)
        attributes: dict[str, Any] = {
            attr.OPERATION_NAME: self._operation,
            attr.PROVIDER_NAME: _provider_name(provider.family),
            attr.SLUICE_PROVIDER: provider.name,
            attr.SLUICE_ATTEMPT: number,
        }
        if model:
            attributes[attr.REQUEST_MODEL] = model
        if server := self._telemetry.server(provider.base_url):
            attributes[attr.SERVER_ADDRESS], attributes[attr.SERVER_PORT] = server
        span = self._telemetry._tracer.start_span(  # type: ignore[union-attr]
            self._span_name(model),
            context=trace.set_span_in_context(self._span),
            kind=SpanKind.CLIENT,
            attributes=attributes,
            links=[Link(other.get_span_context()) for other in self._batched],
        )
        for other in self._batched:  # each caller's trace leads to the attempt its input took
            other.add_link(span.get_span_context(), {attr.SLUICE_ATTEMPT: number})
        return Attempt(span, on_stream)

    def _streamed(self, first_chunk: bytes) -> None:
        """A provider's stream began: the model it names (a JSON answer's comes by ``answer``)."""
        self._response_model = stream_model(first_chunk) or self._response_model

    def _event(self, name: str, attributes: dict[str, Any]) -> None:
        if self._span is not None:
            self._span.add_event(name, attributes)

    def batched(self, others: Sequence[CallHandle]) -> None:
        """This call is sent for itself and ``others`` merged (embeddings batching): its
        attempts link to their spans and theirs to its attempts; every one gets the event."""
        spans = [o._span for o in others if isinstance(o, _LiveHandle) and o._span is not None]
        self._batched = spans
        calls = {attr.SLUICE_BATCH_CALLS: len(others) + 1}
        self._event("sluice.batched", calls)
        for span in spans:
            span.add_event("sluice.batched", calls)

    def cache_hit(self) -> None:
        # The saved cost is known once metering priced the replayed answer: counted at end().
        self._event("sluice.cache.hit", {})

    def coalesced(self) -> None:
        self._event("sluice.coalesced", {})
        if (instruments := self._telemetry._instruments) is not None:
            instruments.coalesced.add(1, self._base_attributes())

    def queue_waited(self, seconds: float, priority: str) -> None:
        self._event(
            "sluice.queue.wait",
            {attr.SLUICE_QUEUE_WAIT: seconds, attr.SLUICE_QUEUE_PRIORITY: priority},
        )
        if (instruments := self._telemetry._instruments) is not None:
            instruments.queue_wait.record(seconds, {attr.SLUICE_QUEUE_PRIORITY: priority})

    def retry(self, provider: str, reason: str, delay_s: float, attempt: int) -> None:
        reason = reason_label(reason)  # the identifier llm_retries_total{reason} has too
        self._event(
            "sluice.retry",
            {
                attr.SLUICE_PROVIDER: provider,
                attr.SLUICE_RETRY_REASON: reason,
                attr.SLUICE_RETRY_DELAY: delay_s,
                attr.SLUICE_ATTEMPT: attempt,
            },
        )
        if (instruments := self._telemetry._instruments) is not None:
            instruments.retries.add(
                1, {attr.SLUICE_PROVIDER: provider, attr.SLUICE_RETRY_REASON: reason}
            )

    def breaker_refused(self, provider: str) -> None:
        self._event("sluice.breaker.refused", {attr.SLUICE_PROVIDER: provider})
        if (instruments := self._telemetry._instruments) is not None:
            instruments.breaker_refusals.add(1, {attr.SLUICE_PROVIDER: provider})

    def fallback(self, from_provider: str, to_provider: str, reason: str) -> None:
        found = {
            attr.SLUICE_FALLBACK_FROM: from_provider,
            attr.SLUICE_FALLBACK_TO: to_provider,
        }
        self._event("sluice.fallback", found | {attr.SLUICE_RETRY_REASON: reason_label(reason)})
        if (instruments := self._telemetry._instruments) is not None:
            instruments.fallbacks.add(1, found)

    def budget_over(self, budget: str, reason: str, enforcement: str) -> None:
        found = {
            attr.SLUICE_BUDGET: budget,
            attr.SLUICE_BUDGET_REASON: reason,
            attr.SLUICE_BUDGET_ENFORCEMENT: enforcement,
        }
        self._event("sluice.budget.over", found)
        if (instruments := self._telemetry._instruments) is not None:
            instruments.budget_refusals.add(1, found)

    def chunk(self) -> None:
        """A chunk of a streamed answer reached the client."""
        now = time.perf_counter()
        instruments = self._telemetry._instruments
        previous, self._last_chunk = self._last_chunk, now
        if previous is None:
            elapsed = now - self._started
            if self._span is not None:
                self._span.set_attribute(attr.RESPONSE_TIME_TO_FIRST_CHUNK, elapsed)
            if instruments is not None:
                self._attrs = self._base_attributes()
                instruments.time_to_first_chunk.record(elapsed, self._attrs)
        elif instruments is not None:
            instruments.time_per_output_chunk.record(now - previous, self._attrs)

    def answer(self, response_model: str | None, output: Any = None) -> None:
        """What the answer says about itself: its model, and its content (kept when opted in)."""
        self._response_model = response_model
        self._output = output

    def failed(self, error_type: str) -> None:
        self._error_type = error_type

    # -- the end -----------------------------------------------------------------------------

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
    ) -> None:
        if self.token is not None:
            # Ended from another context than it started in: nothing to restore there.
            with contextlib.suppress(ValueError):
                CURRENT.reset(self.token)
            self.token = None
        elapsed = time.perf_counter() - self._started
        error_type = error_type or self._error_type
        response_model = response_model or self._response_model
        output = self._output if output is None else output
        if provider is not None:
            self._provider = provider
        self._record_metrics(elapsed, error_type, usage, response_model, cost, cache_status)
        span, self._span = self._span, None
        if span is None:
            return
        found: dict[str, Any] = {attr.HTTP_STATUS: status}
        if self._provider is not None:
            found[attr.PROVIDER_NAME] = _provider_name(self._provider.family)
            found[attr.SLUICE_PROVIDER] = self._provider.name
        if response_model:
            found[attr.RESPONSE_MODEL] = response_model
        if usage is not None:
            found[attr.USAGE_INPUT_TOKENS] = usage.input_tokens
            found[attr.USAGE_OUTPUT_TOKENS] = usage.output_tokens
        if cost is not None:
            found[attr.SLUICE_COST] = float(cost)
        if cache_status is not None:
            found[attr.SLUICE_CACHE_RESULT] = cache_status
        if self._telemetry._capture and output is not None:
            found[attr.OUTPUT_MESSAGES] = _content(output)
        if error_type is not None:
            found[attr.ERROR_TYPE] = error_type
            span.set_status(StatusCode.ERROR)
        span.set_attributes(found)
        span.end()
        if self._context_token is not None:
            otel_context.detach(self._context_token)  # type: ignore[arg-type]
            self._context_token = None

    def _base_attributes(self) -> dict[str, Any]:
        """The attributes every metric of this call carries (as far as known now)."""
        telemetry = self._telemetry
        provider = self._provider
        found: dict[str, Any] = {
            attr.OPERATION_NAME: self._operation,
            attr.PROVIDER_NAME: _provider_name(provider.family if provider else self.call.api),
            attr.SLUICE_OPERATION: self.call.operation.name,
        }
        if self.call.model:
            found[attr.REQUEST_MODEL] = telemetry.model_value(self.call.model)
        if self._response_model:
            found[attr.RESPONSE_MODEL] = telemetry.model_value(self._response_model)
        if provider is not None:
            found[attr.SLUICE_PROVIDER] = provider.name
            if server := telemetry.server(provider.base_url):
                found[attr.SERVER_ADDRESS], found[attr.SERVER_PORT] = server
        return found

    def _record_metrics(
        self,
        elapsed: float,
        error_type: str | None,
        usage: UsageView | None,
        response_model: str | None,
        cost: Decimal | None,
        cache_status: str | None,
    ) -> None:
        instruments = self._telemetry._instruments
        if instruments is None or self._operation == attr.LIST_MODELS:
            return
        found = self._base_attributes()
        if response_model:
            found[attr.RESPONSE_MODEL] = self._telemetry.model_value(response_model)
        if cache_status in ("hit", "miss", "bypass"):
            instruments.cache_requests.add(1, {attr.SLUICE_CACHE_RESULT: cache_status})
        if error_type is not None:
            instruments.duration.record(elapsed, found | {attr.ERROR_TYPE: error_type})
            return
        instruments.duration.record(elapsed, found)
        if cache_status == "hit":  # answered from the cache: nothing billed, its cost saved
            if cost is not None:
                instruments.cache_saved.add(float(cost), found)
            return
        if usage is not None:  # the conventions: no usage reported, no token metric
            instruments.tokens.record(
                usage.input_tokens, found | {attr.TOKEN_TYPE: attr.TOKEN_INPUT}
            )
            instruments.tokens.record(
                usage.output_tokens, found | {attr.TOKEN_TYPE: attr.TOKEN_OUTPUT}
            )
        if cost is not None:
            instruments.cost.add(float(cost), found)


def _provider_name(family: str) -> str:
    return attr.PROVIDER_BY_FAMILY.get(family, family)


def _content(value: Any) -> str:
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= CONTENT_LIMIT else text[:CONTENT_LIMIT] + "…"


def stream_model(first_chunk: bytes) -> str | None:
    """``model`` (OpenAI, repeated on every chunk) or ``message.model`` (Anthropic's
    ``message_start``, the stream's first event) of the first data event in a streamed reply's
    ``first_chunk``, which the transport hands over holding at least that event; None when it
    names none or is not JSON."""
    for line in first_chunk.splitlines():
        if not line.startswith(b"data:"):
            continue
        try:
            payload = orjson.loads(line[5:])
        except orjson.JSONDecodeError:
            return None
        if not isinstance(payload, dict):
            return None
        if payload.get("type") == "message_start":
            message = payload.get("message")
            payload = message if isinstance(message, dict) else {}
        model = payload.get("model")
        return model if isinstance(model, str) and model else None
    return None
