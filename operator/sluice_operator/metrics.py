"""The operator's Prometheus metrics and the ``/metrics`` endpoint that serves them.

The only module that imports ``prometheus_client``. One ``OperatorMetrics`` is made at start-up
(``handlers.start``) with a registry of its own, so tests make as many as they like; the
handlers, the pusher, the webhook and the inject logic record into it. Names and labels are an
interface (the chart's dashboards and alerts read them): see docs/operator.md, Metrics.
Label values are bounded: kinds and results are fixed sets, namespaces and policies are the
cluster's own objects, and a policy's series go when the policy does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Literal

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

logger = logging.getLogger("sluice.operator.metrics")

# What asked for a reconcile of a namespace.
ReconcileKind = Literal["LlmPolicy", "LlmBudget", "Deployment", "Pod"]
# success: the namespace is in line; coalesced: a run in progress covered the request.
ReconcileResult = Literal["success", "coalesced", "error"]
# ok: the sidecar runs the configuration; refused: it answered 4xx (final, not retried);
# failed: every attempt ended in a connection error, a timeout or a 5xx.
PushOutcome = Literal["ok", "refused", "failed"]
SidecarState = Literal["desired", "synced", "missing"]
# injected: the pod got the sidecar; skipped: not for us (already injected, dry run of
# nothing to do); error: the webhook failed (failurePolicy Ignore admits the pod without it).
AdmissionResult = Literal["injected", "skipped", "error"]
CollectionResult = Literal["ok", "error"]

# Pushes and admissions take milliseconds; reconciles of a big namespace up to seconds.
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SLOW_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconciles = Counter(
            "sluice_operator_reconciles",
            "Reconciles of a namespace, by what asked for it and how it ended.",
            ["kind", "result"],
            registry=r,
        )
        self.events_ignored = Counter(
            "sluice_operator_events_ignored",
            "Watch events that cannot change what a reconcile plans, so not reconciled: the "
            "operator's own status writes, status-only Deployment changes, pods already "
            "running the wanted configuration or not ready yet.",
            ["kind"],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "sluice_operator_reconcile_duration_seconds",
            "From a reconcile request to its namespace being in line (includes waiting for "
            "a run in progress).",
            ["kind"],
            buckets=SLOW_BUCKETS,
            registry=r,
        )
        self.pushes = Counter(
            "sluice_operator_pushes",
            "Configuration pushes to one sidecar (all attempts of one push count once).",
            ["result"],
            registry=r,
        )
        self.push_duration = Histogram(
            "sluice_operator_push_duration_seconds",
            "One push to one sidecar, retries included.",
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.sidecars = Gauge(
            "sluice_operator_sidecars",
            "Sidecars of the workloads a policy applies to: desired (ready pods), synced "
            "(running the current configuration), missing (opted-in pods without the sidecar).",
            ["namespace", "policy", "state"],
            registry=r,
        )
        self.usage_collections = Counter(
            "sluice_operator_usage_collections",
            "Collections of one sidecar's usage (GET /admin/usage) for budgets.",
            ["result"],
            registry=r,
        )
        self.admissions = Counter(
            "sluice_operator_admissions",
            "Pod admissions the injection webhook answered.",
            ["result"],
            registry=r,
        )
        self.admission_duration = Histogram(
            "sluice_operator_admission_duration_seconds",
            "Time the injection webhook took to answer one admission.",
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.certificate_expiry = Gauge(
            "sluice_operator_certificate_expiry_timestamp_seconds",
            "When the webhook's serving certificate expires (Unix time).",
            registry=r,
        )
        # (namespace, state) -> policies with a series, so vanished policies lose theirs.
        self._sidecar_series: dict[tuple[str, str], set[str]] = {}

    @contextmanager
    def reconcile(self, kind: ReconcileKind) -> Iterator[_Outcome]:
        """Time one reconcile request; the body sets ``outcome.coalesced`` when it was."""
        outcome = _Outcome()
        started = time.perf_counter()
        try:
            yield outcome
        except BaseException:
            self.reconciles.labels(kind, "error").inc()
            raise
        result: ReconcileResult = "coalesced" if outcome.coalesced else "success"
        self.reconciles.labels(kind, result).inc()
        if not outcome.coalesced:
            self.reconcile_duration.labels(kind).observe(time.perf_counter() - started)

    def event_ignored(self, kind: ReconcileKind) -> None:
        self.events_ignored.labels(kind).inc()

    def push(self, result: PushOutcome, seconds: float) -> None:
        self.pushes.labels(result).inc()
        self.push_duration.observe(seconds)

    def usage_collection(self, result: CollectionResult) -> None:
        self.usage_collections.labels(result).inc()

    @contextmanager
    def admission(self) -> Iterator[_Outcome]:
        """Time one admission; the body sets ``outcome.injected`` when it injected."""
        outcome = _Outcome()
        started = time.perf_counter()
        try:
            yield outcome
        except BaseException:
            self.admissions.labels("error").inc()
            raise
        finally:
            self.admission_duration.observe(time.perf_counter() - started)
        self.admissions.labels("injected" if outcome.injected else "skipped").inc()

    def set_sidecars(self, namespace: str, state: SidecarState, counts: Mapping[str, int]) -> None:
        """The whole set of one state's counts for a namespace: policy -> sidecars.

        Policies not in ``counts`` lose their series (deleted, or nothing to report)."""
        key = (namespace, state)
        for gone in self._sidecar_series.get(key, set()) - set(counts):
            self.sidecars.remove(namespace, gone, state)
        for policy, count in counts.items():
            self.sidecars.labels(namespace, policy, state).set(count)
        self._sidecar_series[key] = set(counts)

    def set_certificate_expiry(self, timestamp: float) -> None:
        self.certificate_expiry.set(timestamp)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Outcome:
    """What the timed body found out (set by it, read when it ends)."""

    __slots__ = ("coalesced", "injected")

    def __init__(self) -> None:
        self.coalesced = False
        self.injected = False


def build_metrics_app(metrics: OperatorMetrics) -> web.Application:
    async def serve(_: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", serve)
    return app


async def start_metrics_server(metrics: OperatorMetrics, addr: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(build_metrics_app(metrics), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, addr, port).start()
    logger.info("metrics served on http://%s:%d/metrics", addr, port)
    return runner
