"""Latency prediction on every call: ``x-sluice-estimated-ms``, the in-flight list, anomalies.

Right inside the metering stage (it reads ``call.estimate.prompt_tokens``). Before the call the
prediction for the primary candidate provider and the operation goes into the answer's headers
and ``call.estimate_s``, and the call is listed in flight (``GET /admin/inflight``) until its
answer is finished.
When the answer is finished (streams included) a successful call that was not served from the
cache or a shared call is added to the history of the provider that answered. It is an anomaly,
counted in ``llm_latency_anomalies_total`` and logged, when it took longer than the predicted
range's top times ``latency.anomalyFactor`` *and* more than ``ANOMALY_FLOOR_S`` beyond that top.

The floor: against a fast upstream the predicted range is a few milliseconds wide, so a ratio
alone calls every bit of scheduling jitter an anomaly ("took 0.0s, over 2.0x the predicted
0.0-0.0 seconds"). The reference design predicts and reports durations in whole seconds
(estimates of "X-Y seconds", elapsed time as integer seconds, progress every 5 s): a call less
than one second beyond its prediction is within the resolution anyone acts on. Warnings are
further limited to one a minute per provider and operation (``ThrottledLog``), with the count
of those left out; the metric counts every anomaly.
"""

from __future__ import annotations

import asyncio
import logging

from sluice_sidecar.economics.latency_model import LatencyHistory, Prediction
from sluice_sidecar.errors import NoProviderForModel
from sluice_sidecar.observability.prometheus import Metrics
from sluice_sidecar.observability.throttled_log import ThrottledLog
from sluice_sidecar.pipeline.call import Call, Next
from sluice_sidecar.transports.base import UpstreamReply

logger = logging.getLogger("sluice.latency")
ANOMALY_FLOOR_S = 1.0  # seconds beyond the predicted top before a call is an anomaly
WARNING_INTERVAL_S = 60.0  # one anomaly warning a minute per provider and operation


class LatencyStage:
    def __init__(self, history: LatencyHistory, metrics: Metrics) -> None:
        self._history = history
        self._metrics = metrics
        self._warnings = ThrottledLog(logger, interval_s=WARNING_INTERVAL_S)

    async def __call__(self, call: Call, next_stage: Next) -> UpstreamReply:
        tokens = call.estimate.prompt_tokens if call.estimate else 0
        prediction = None
        if call.model is not None and (provider := _primary(call)) is not None:
            prediction = self._history.predict(provider, call.operation.name, tokens)
            call.estimate_s = prediction.estimated_s
            call.response_headers["x-sluice-estimated-ms"] = str(
                round(prediction.estimated_s * 1000)
            )
        if call.model is not None and call.operation.adaptive_timeout is not None:
            call.attempt_timeouts = self._attempt_timeouts(call, tokens)
        in_flight = self._history.in_flight
        entry = in_flight.open(call, call.estimate_s)
        started = asyncio.get_running_loop().time()
        try:
            reply = await next_stage(call)
        except BaseException:
            in_flight.close(entry)
            raise
        reply.on_close.append(lambda: in_flight.close(entry))
        if call.model is not None:
            reply.on_close.append(lambda: self._done(call, tokens, started, prediction))
        return reply

    def _attempt_timeouts(self, call: Call, tokens: int) -> dict[str, float]:
        """Per candidate provider with enough history: its learned percentile x factor, within
        the floor and the ceiling (by default the call's own timeout)."""
        spec = call.operation.adaptive_timeout
        assert spec is not None and call.model is not None
        try:
            candidates = call.runtime.candidates(call.api, call.model, call.operation)
        except NoProviderForModel:
            return {}
        ceiling = min(spec.ceiling_seconds or call.timeout_s, call.timeout_s)
        timeouts = {}
        for provider in candidates:
            learned, points = self._history.quantile(
                provider.name, call.operation.name, tokens, spec.percentile
            )
            if points >= spec.min_samples:
                timeouts[provider.name] = min(
                    max(learned * spec.factor, spec.floor_seconds), ceiling
                )
        return timeouts

    def _done(self, call: Call, tokens: int, started: float, prediction: Prediction | None):
        if call.cache_status == "hit" or call.provider is None:
            return
        elapsed = asyncio.get_running_loop().time() - started
        operation = call.operation.name
        factor = call.runtime.config.latency.anomaly_factor
        if (
            prediction is not None
            and prediction.points > 0
            and call.provider.name == _primary(call)
            and is_anomaly(elapsed, prediction, factor)
        ):
            self._metrics.latency_anomalies.labels(call.provider.name, operation).inc()
            self._warnings.log(
                logging.WARNING,
                (call.provider.name, operation),
                "%s %s took %.1fs, over %.1fx the predicted %s",
                call.provider.display_name,
                operation,
                elapsed,
                factor,
                prediction.message,
            )
        self._history.record(call.provider.name, operation, tokens, elapsed)


def is_anomaly(elapsed_s: float, prediction: Prediction, factor: float) -> bool:
    """Slower than the predicted top times ``factor``, and by more than the floor."""
    return elapsed_s > max(prediction.high_s * factor, prediction.high_s + ANOMALY_FLOOR_S)


def _primary(call: Call) -> str | None:
    assert call.model is not None
    try:
        return call.runtime.candidates(call.api, call.model, call.operation)[0].name
    except NoProviderForModel:
        return None
