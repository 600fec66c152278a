"""Circuit breaker and bulkhead around each attempt at a provider.

Open circuit: refuse at once (the fallback stage moves on). Full bulkhead: refuse at once with
503 and Retry-After; both are counted in ``llm_circuit_breaker_rejections_total``. Otherwise
the attempt's outcome is recorded: deadline expiry and the failures whose class's
``errorPolicy`` says ``openBreaker`` (by default the transient ones) count against the provider;
permanent errors (the caller's fault) count as successes, other transient ones as neither.
For a stream the bulkhead slot is held until the stream is finished.
"""

from __future__ import annotations

import asyncio

from sluice_sidecar.errors import (
    BulkheadFull,
    CircuitOpen,
    TransientUpstreamError,
    UpstreamError,
)
from sluice_sidecar.observability import otel
from sluice_sidecar.observability.prometheus import Metrics
from sluice_sidecar.pipeline.call import Call, Next
from sluice_sidecar.resilience.breaker import BreakerRegistry
from sluice_sidecar.resilience.error_classes import error_class
from sluice_sidecar.transports.base import UpstreamReply

BULKHEAD_RETRY_AFTER_S = 1.0


class CircuitStage:
    def __init__(self, metrics: Metrics, breakers: BreakerRegistry) -> None:
        self._metrics = metrics
        self._breakers = breakers

    async def __call__(self, call: Call, next_stage: Next) -> UpstreamReply:
        provider = call.provider
        assert provider is not None
        breaker = self._breakers.get(provider.name, call.model_name)
        model = self._metrics.model_label(call.model_name)
        if not breaker.allows_call():
            wait = breaker.retry_after()
            otel.current_call().breaker_refused(provider.name)
            self._metrics.breaker_rejections.labels(provider.name, model, "open").inc()
            raise CircuitOpen(
                f"circuit for {breaker.key} is open; retry in {wait:.1f}s", retry_after=wait or 1.0
            )
        if breaker.bulkhead_full():
            self._metrics.breaker_rejections.labels(provider.name, model, "bulkhead").inc()
            raise BulkheadFull(
                f"{breaker.spec.max_concurrent} calls to {breaker.key} already in flight",
                retry_after=BULKHEAD_RETRY_AFTER_S,
            )
        breaker.acquire()
        call.attempts += 1
        try:
            reply = await next_stage(call)
        except UpstreamError as error:
            breaker.release()
            transient = isinstance(error, TransientUpstreamError)
            # errorPolicy: by default transient failures count against the breaker; a permanent
            # one is the provider answering as it should, and one that does not count is neutral.
            if call.runtime.error_policy[error_class(error)].open_breaker:
                breaker.record_failure()
            elif transient:
                breaker.record_neutral()
            else:
                breaker.record_success()
            outcome = "transient_error" if transient else "permanent_error"
            self._metrics.attempt(provider.name, model, outcome).inc()
            raise
        except asyncio.CancelledError:
            breaker.release()
            timed_out = asyncio.get_running_loop().time() >= call.deadline
            if timed_out:
                breaker.record_failure()
            else:
                breaker.record_neutral()
            self._metrics.attempt(
                provider.name, model, "timeout" if timed_out else "cancelled"
            ).inc()
            raise
        except BaseException:
            breaker.release()
            breaker.record_neutral()
            raise
        breaker.record_success()
        self._metrics.attempt(provider.name, model, "success").inc()
        if reply.streaming:
            reply.on_close.append(breaker.release)
        else:
            breaker.release()
        return reply
