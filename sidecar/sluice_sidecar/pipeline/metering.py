"""Cost tracking: estimate before the call, read usage from the answer, price it, record it.

The outermost stage. Before: ``call.estimate`` (prompt tokens from the text, output bounded by
max_tokens, priced by the configuration's ``PriceTable``), which the budget stage reserves.
For OpenAI-style streams whose client did not ask for usage, ``stream_options.include_usage``
is added upstream and the extra usage chunk is stripped from what the client sees. After: the
usage comes from the JSON answer, or from the stream as it passes (``usage.SseUsageReader``);
the call is priced and recorded once (``call.usage``, ``call.cost``, metrics, the usage ledger,
listeners such as session reports) when the answer is complete or the reply is closed, before
inner stages' close callbacks (budget reconciliation) run. A cache hit records what it saved.

Spend is never dropped because the usage did not arrive. A call cancelled (the caller left, or
the deadline passed) after it was sent upstream (``call.attempts``) is recorded with its
estimate: the estimated prompt and the output bound, as status 499. A stream that ends before
its final usage (cut by either side; an Anthropic stream whose ``message_delta`` never came) is
charged the input it reported and the output bound. Both are marked ``estimated`` in the usage
ledger and counted in ``llm_usage_estimated_total``; their cost goes into ``llm_cost_usd``,
their tokens (which nobody reported) not into ``llm_tokens``. Cancelled calls, calls that failed
after reaching a provider, and attempts sent and never answered (``call.lost_attempts``, each
at its worst case: the estimate at that provider's price) are recorded apart from answered
spend, as ``unanswered`` in the usage ledger (``economics.unanswered``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import orjson

from sluice_sidecar.economics.cache_key import BodyMemo
from sluice_sidecar.economics.ledger import CallRecord
from sluice_sidecar.economics.unanswered import lost_spend
from sluice_sidecar.economics.usage import (
    SseUsageReader,
    Usage,
    estimate_prompt_tokens,
    output_bound,
    usage_from_json,
)
from sluice_sidecar.errors import NoProviderForModel, SluiceError
from sluice_sidecar.observability.prometheus import Metrics
from sluice_sidecar.pipeline.call import Call, Estimate, Next
from sluice_sidecar.pipeline.runtime import Runtime
from sluice_sidecar.transports.base import UpstreamReply

logger = logging.getLogger("sluice.cost")
USAGE_KINDS = frozenset({"chat", "completions"})  # OpenAI routes with stream_options
MAX_WARNED_MODELS = 1024
ESTIMATE_MEMO_ENTRIES = 1024
ESTIMATE_MEMO_BYTES = 2 * 1024 * 1024  # request bodies the estimates' memo holds, at most
CLIENT_CLOSED = 499  # the status a cancelled call is recorded with (nginx's convention)

Recorder = Callable[[CallRecord], None]


class MeteringStage:
    def __init__(self, metrics: Metrics, recorders: list[Recorder]) -> None:
        self._metrics = metrics
        self._recorders = recorders
        self._warned: set[str] = set()
        # Estimates of repeated requests (a cache hit's, every time), valid for the runtime
        # and the prices they were made under.
        self._estimates: BodyMemo[Estimate] = BodyMemo(ESTIMATE_MEMO_ENTRIES, ESTIMATE_MEMO_BYTES)
        self._estimates_for: tuple[Runtime, int] | None = None

    async def __call__(self, call: Call, next_stage: Next) -> UpstreamReply:
        call.estimate = self._estimate(call)
        strip = _ask_for_stream_usage(call)
        meter = _Meter(self, call)
        try:
            reply = await next_stage(call)
        except asyncio.CancelledError:
            if call.attempts:  # sent upstream: the provider may bill what it did
                meter.finish(meter.charged(None), estimated="cancelled", status=CLIENT_CLOSED)
            raise
        except Exception as error:
            if call.lost_attempts:  # failed, but a provider may bill what it was sent
                status = error.status if isinstance(error, SluiceError) else 500
                meter.finish(None, status=status)
            raise
        if reply.streaming:
            assert reply.chunks is not None
            reader = SseUsageReader(strip_openai_usage=strip)
            first = reader.feed(reply.first_chunk)
            reply.chunks = _metered(reply.chunks, reader, meter)
            reply.first_chunk = first
            reply.on_close.append(lambda: meter.finish_stream(reader, ended=False))
        else:
            meter.finish(usage_from_json(reply.json))
        return reply

    def _estimate(self, call: Call) -> Estimate:
        """The call's estimate: remembered for a request seen under this runtime and these
        prices, else made (and remembered)."""
        raw = call.raw_body
        if raw is None:
            return _made_estimate(call)
        runtime, generation = call.runtime, call.runtime.prices.generation()
        made_for = self._estimates_for
        # By identity: a Runtime compares field by field, and a new one is a new configuration.
        if made_for is None or made_for[0] is not runtime or made_for[1] != generation:
            self._estimates.clear()
            self._estimates_for = (runtime, generation)
        operation = call.operation
        # What the estimate depends on besides the body (the model is in it): the candidates
        # and their prices come from the runtime and the operation's name, the output bound
        # from the operation's preset.
        preset = (operation.max_tokens, operation.force_preset)
        context = (call.api, call.kind, operation.name, preset)
        found = self._estimates.get(raw, context)
        if found is None:
            found = _made_estimate(call)
            self._estimates.put(raw, context, found)
        return found

    def record(
        self,
        call: Call,
        usage: Usage | None,
        cost: Decimal | None,
        priced: bool,
        estimated: str | None = None,
        status: int = 200,
    ) -> None:
        provider = call.provider.name if call.provider else "none"
        model = self._metrics.model_label(call.model_name)
        operation = call.operation.name
        hit = call.cache_status == "hit"
        answered = status == 200
        if usage is None:
            if answered:  # a failed call has no usage to miss
                self._metrics.usage_unknown.labels(provider, model).inc()
        elif estimated is not None:  # tokens nobody reported: only the spend is counted
            self._metrics.usage_estimated.labels(provider, model, estimated).inc()
            if cost is not None:
                self._metrics.cost_of(provider, model, operation).inc(float(cost))
        elif not hit:
            tokens = self._metrics.tokens_of
            tokens(provider, model, operation, "input").inc(usage.input_tokens)
            tokens(provider, model, operation, "output").inc(usage.output_tokens)
            if usage.cached_input_tokens:
                tokens(provider, model, operation, "cached_input").inc(usage.cached_input_tokens)
            if cost is not None:
                self._metrics.cost_of(provider, model, operation).inc(float(cost))
        if usage is not None and not priced:
            self._metrics.unpriced.labels(provider, model).inc()
            if call.model_name not in self._warned and len(self._warned) < MAX_WARNED_MODELS:
                self._warned.add(call.model_name)
                logger.warning(
                    "model %s (provider %s) has no price: its cost is reported as unknown; "
                    "add it to the policy's pricing",
                    call.model_name,
                    provider,
                )
        lost = _lost(call)
        for lost_provider, lost_cost in lost:
            self._metrics.unanswered_attempts.labels(lost_provider, model).inc()
            if lost_cost is not None:
                self._metrics.unanswered_cost.labels(lost_provider, model).inc(float(lost_cost))
        started = call.deadline - call.operation.timeout_s
        record = CallRecord(
            at=call.started_wall,
            session=call.session,
            operation=operation,
            provider=provider,
            model=call.model_name,
            usage=usage,
            cost=None if hit else cost,
            estimated_cost=call.estimate.cost if call.estimate else None,
            cache=call.cache_status,
            saved=cost if hit else None,
            latency_ms=round((asyncio.get_running_loop().time() - started) * 1000, 2),
            retries=call.retries,
            status=status,
            fingerprint=_fingerprint(call) if call.session is not None else None,
            kind=call.kind,
            estimated=estimated,
            answered=answered,
            lost=lost,
            output_bound=call.estimate.max_output_tokens if call.estimate else None,
            temperature=_temperature(call),
        )
        for recorder in self._recorders:
            recorder(record)


class _Meter:
    """Prices and records one call exactly once."""

    __slots__ = ("call", "done", "stage")

    def __init__(self, stage: MeteringStage, call: Call) -> None:
        self.stage = stage
        self.call = call
        self.done = False

    def finish(self, usage: Usage | None, estimated: str | None = None, status: int = 200) -> None:
        if self.done:
            return
        self.done = True
        call = self.call
        cost = None
        priced = False
        if usage is not None and call.model:
            provider = call.provider
            model = provider.upstream_model(call.model) if provider else call.model
            price = call.runtime.prices.lookup(provider.name if provider else None, model)
            if price is not None:
                priced = True
                cost = price.cost(
                    usage.input_tokens, usage.output_tokens, usage.cached_input_tokens
                )
        call.usage = usage
        call.cost = cost
        self.stage.record(call, usage, cost, priced, estimated, status)

    def finish_stream(self, reader: SseUsageReader, *, ended: bool) -> None:
        """A stream is over: ``ended`` when its last byte arrived, else closed before it."""
        if reader.final or (ended and reader.usage is None):
            self.finish(reader.usage)  # all of it, or a provider that reports none
        else:
            self.finish(self.charged(reader.usage), estimated="cut")

    def charged(self, seen: Usage | None) -> Usage:
        """What a call whose usage never fully arrived is charged: the input the provider
        reported (else the estimate) and the most output it could have produced (the
        reservation's bound), since it may have generated more than reached the sidecar."""
        estimate = self.call.estimate
        assert estimate is not None
        if seen is None:
            return Usage(estimate.prompt_tokens, estimate.max_output_tokens)
        return Usage(
            seen.input_tokens or estimate.prompt_tokens,
            max(seen.output_tokens, estimate.max_output_tokens),
            seen.cached_input_tokens,
        )


def _made_estimate(call: Call) -> Estimate:
    prompt = estimate_prompt_tokens(call.body)
    operation = call.operation
    output = output_bound(
        call.body, call.kind, operation.max_tokens, force_preset=operation.force_preset
    ).tokens
    return Estimate(prompt, output, worst_cost(call, prompt, output))


def worst_cost(call: Call, prompt_tokens: int, output_tokens: int) -> Decimal | None:
    """The most the call can cost: the dearest price among the providers it may go to.

    Priced under the settlement's rules (``_Meter.finish``): per candidate provider, its
    ``provider/model`` price of the model it sends upstream (model map applied). None: no
    candidate has a price (the settlement will not charge either).
    """
    if not call.model:
        return None
    prices = call.runtime.prices
    try:
        candidates = call.runtime.candidates(call.api, call.model, call.operation)
    except NoProviderForModel:
        candidates = ()
    found = [prices.lookup(p.name, p.upstream_model(call.model)) for p in candidates]
    if not candidates:
        found = [prices.lookup(None, call.model)]
    # Whether the input is read from the provider's cache is up to the provider: both ways.
    costs = [p.worst_cost(prompt_tokens, output_tokens) for p in found if p is not None]
    return max(costs, default=None)


async def _metered(
    chunks: AsyncIterator[bytes], reader: SseUsageReader, meter: _Meter
) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        out = reader.feed(chunk)
        if out:
            yield out
    rest = reader.flush()
    if rest:
        yield rest
    meter.finish_stream(reader, ended=True)


def _temperature(call: Call) -> float | None:
    """The temperature the call ran at: the request's, else the operation preset's."""
    operation = call.operation
    value = (call.body or {}).get("temperature")
    if operation.temperature is not None and (operation.force_preset or value is None):
        return operation.temperature
    return float(value) if isinstance(value, int | float) else None


def _lost(call: Call) -> tuple[tuple[str, Decimal | None], ...]:
    """Each lost attempt's provider and possible cost."""
    if not call.lost_attempts or call.estimate is None:
        return ()
    estimate = call.estimate
    spend = lost_spend(
        call.runtime.prices,
        call.lost_attempts,
        estimate.prompt_tokens,
        estimate.max_output_tokens,
    )
    return tuple((a.provider, c) for a, c in zip(call.lost_attempts, spend.costs, strict=True))


def _fingerprint(call: Call) -> str | None:
    """Identity of the request (session reports spot repeats); only calls with a session pay."""
    if call.raw_body is None:
        return None
    return hashlib.blake2b(call.raw_body, digest_size=12).hexdigest()


def _ask_for_stream_usage(call: Call) -> bool:
    """Ask an OpenAI-style stream for its usage chunk; True when the client did not."""
    body = call.body
    if not call.stream or call.api != "openai" or call.kind not in USAGE_KINDS or body is None:
        return False
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return False
    body = dict(body)
    body["stream_options"] = {
        **(options if isinstance(options, dict) else {}),
        "include_usage": True,
    }
    call.body = body
    call.raw_body = orjson.dumps(body)
    return True
