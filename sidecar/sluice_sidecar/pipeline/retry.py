"""Retry failures of one provider, inside the call's single deadline.

Which failures: those whose class's ``errorPolicy`` says ``retry`` (by default the transient
ones: ``resilience.error_classes``).

The wait before retry n is what the provider asked for (Retry-After and rate-limit reset
headers) or else the configured backoff schedule. A retry that could not finish before the
deadline is not started: the last error is answered instead of waiting into a timeout. A wait
that is not a finite, non-negative number (whoever produced it) is replaced by the schedule's:
``asyncio.sleep(nan)`` would corrupt the event loop's timer heap for every call.
Streams are retried only before their first byte reached the client, which holds by design:
a transport returns a stream only after its first chunk arrived.
"""

from __future__ import annotations

import asyncio
import logging
import math

from sluice_sidecar.errors import UpstreamError
from sluice_sidecar.observability import otel
from sluice_sidecar.observability.prometheus import Metrics
from sluice_sidecar.pipeline.call import Call, Next
from sluice_sidecar.resilience.backoff import retry_delay_ms
from sluice_sidecar.resilience.breaker import BreakerRegistry
from sluice_sidecar.resilience.error_classes import error_class
from sluice_sidecar.transports.base import UpstreamReply

logger = logging.getLogger("sluice.retry")


class RetryStage:
    def __init__(self, metrics: Metrics, breakers: BreakerRegistry) -> None:
        self._metrics = metrics
        self._breakers = breakers

    async def __call__(self, call: Call, next_stage: Next) -> UpstreamReply:
        spec = call.operation.retry
        provider = call.provider
        assert provider is not None
        loop = asyncio.get_running_loop()
        attempt = 1
        while True:
            try:
                return await next_stage(call)
            except UpstreamError as error:
                # errorPolicy: by default transient failures are retried, permanent ones not.
                if (
                    attempt >= spec.max_attempts
                    or not call.runtime.error_policy[error_class(error)].retry
                ):
                    raise
                delay_ms = _requested_ms(error.retry_after)
                if delay_ms is None:
                    rate = self._breakers.get(provider.name, call.model_name).failure_rate()
                    delay_ms = retry_delay_ms(spec, attempt, failure_rate=rate)
                if loop.time() + delay_ms / 1000 >= call.deadline:
                    logger.warning(
                        "%s %s not retrying %s: waiting %.0fms would pass the deadline",
                        provider.display_name,
                        call.operation.name,
                        error.reason,
                        delay_ms,
                    )
                    raise
                self._metrics.retried(provider.name, error.reason, spec.strategy)
                model = self._metrics.model_label(call.model_name)
                self._metrics.error(error, provider.name, model, retried=True)
                logger.warning(
                    "%s %s retry %d/%d due to %s. Waiting %.0fms before retry",
                    provider.display_name,
                    call.operation.name,
                    attempt,
                    spec.max_attempts - 1,
                    error.reason,
                    delay_ms,
                )
                otel.current_call().retry(provider.name, error.reason, delay_ms / 1000, attempt)
                call.retries += 1
                attempt += 1
                await asyncio.sleep(delay_ms / 1000)


def _requested_ms(retry_after: float | None) -> float | None:
    """The provider's requested wait in milliseconds, when it is a usable number."""
    if retry_after is None or not math.isfinite(retry_after) or retry_after < 0:
        return None
    return retry_after * 1000
