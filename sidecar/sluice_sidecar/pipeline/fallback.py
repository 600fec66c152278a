"""Provider fallback: try the call's candidate providers in order until one answers.

An open circuit or a full bulkhead moves the call to the next provider; an upstream failure
(after that provider's retries) does when its class's ``errorPolicy`` says ``fallback``: by
default a transient failure does, a permanent one (the request itself is wrong) does not. A
prompt too long for the model's window is made once more with ``errorPolicy.largerWindowModel``
when the policy names one (``x-sluice-model`` says so), at the providers serving that model.
"""

from __future__ import annotations

import logging

import orjson

from sluice_sidecar.errors import CircuitOpen, KeyMissing, Refused, SluiceError, UpstreamError
from sluice_sidecar.observability import otel
from sluice_sidecar.observability.prometheus import Metrics
from sluice_sidecar.observability.redaction import redact
from sluice_sidecar.pipeline.call import Call, Next
from sluice_sidecar.resilience.error_classes import error_class
from sluice_sidecar.transports.base import UpstreamReply

logger = logging.getLogger("sluice.fallback")


class FallbackStage:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def __call__(self, call: Call, next_stage: Next) -> UpstreamReply:
        candidates = call.runtime.candidates(call.api, call.model, call.operation)
        last_error: SluiceError | None = None
        for index, provider in enumerate(candidates):
            if index:
                previous = candidates[index - 1].name
                self._metrics.fallbacks.labels(previous, provider.name).inc()
                reason = last_error.code if last_error is not None else "unknown"
                otel.current_call().fallback(previous, provider.name, reason)
                # An open circuit is already reported when it opens, a missing key by the
                # admin API and the policy: skipping either is routine.
                quiet = isinstance(last_error, CircuitOpen | KeyMissing)
                level = logging.DEBUG if quiet else logging.WARNING
                logger.log(
                    level,
                    "%s falling back from %s to %s: %s",
                    call.operation.name,
                    previous,
                    provider.name,
                    # Built from safe fields by the transport; masked again, as every log is.
                    redact(str(last_error)),
                )
            if provider.missing_key is not None:
                last_error = KeyMissing(
                    f"provider {provider.name} has no API key: {provider.missing_key} is not"
                    " mounted in this Pod (create the Secret; the kubelet mounts it within"
                    " about a minute)"
                )
                continue
            call.provider = provider
            try:
                return await next_stage(call)
            except Refused as error:
                last_error = error
            except UpstreamError as error:
                kind = error_class(error)
                larger = call.runtime.config.error_policy.larger_window_model
                if kind == "context_length" and larger is not None and larger != call.model:
                    return await self._with_larger_window(call, next_stage, larger)
                # errorPolicy: by default transient failures fall back, permanent ones not.
                if not call.runtime.error_policy[kind].fallback:
                    raise
                last_error = error
        assert last_error is not None
        if isinstance(last_error, Refused) and len(candidates) > 1:
            waits = [e for e in (last_error.retry_after,) if e is not None]
            raise CircuitOpen(
                f"every provider for {call.model_name} is unavailable: {last_error.message}",
                retry_after=min(waits) if waits else None,
            ) from last_error
        raise last_error

    async def _with_larger_window(self, call: Call, next_stage: Next, model: str) -> UpstreamReply:
        """The call again with ``errorPolicy.largerWindowModel``; once, as it is the model now."""
        logger.warning(
            "%s: the prompt is longer than %s's window; trying %s",
            call.operation.name,
            call.model_name,
            model,
        )
        if call.body is not None:
            call.body = dict(call.body, model=model)
            call.raw_body = orjson.dumps(call.body)
        call.model = model
        call.prepared_bodies.clear()
        call.response_headers["x-sluice-model"] = model
        return await self(call, next_stage)
