"""The one place the request pipeline is put together, once, at start-up.

``build_pipeline`` takes the long-lived objects the stages share (``Dependencies``, created by
``sluice_sidecar.service.state``) and returns the composed chain. It is the only module that
imports the stages; the stages import none of each other.

Order, outermost first:

    degrade   -> past a budget's threshold: a cheaper model or a leaner preset
    metering  -> estimate; usage from the answer (streams too); price; record
    latency   -> x-sluice-estimated-ms from history; record duration; flag anomalies
    cache     -> answer from the exact-match cache (hit), or store the answer (miss)
    coalesce  -> identical cacheable calls in flight share the first one's answer
    budget    -> reserve the estimate in applicable budgets (429 when over); settle on close
    batching  -> concurrent embeddings calls merged into one upstream call, split back
    queue     -> priority admission under queue.maxConcurrent (429 past its bounds)
    fallback  -> for each candidate provider, in order
    retry     -> attempts at that provider, with backoff, inside the deadline
    circuit   -> breaker admission, bulkhead, outcome recording per attempt
    upstream  -> preset, model map, credentials; send through the transport

The call's deadline and timeout warning wrap the whole chain (``sluice_sidecar.api.proxy``), so one
deadline covers every retry and fallback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sluice_sidecar.contract.economics import CacheSpec
from sluice_sidecar.economics.batch_stats import BatchStats
from sluice_sidecar.economics.budgets import BudgetLedger
from sluice_sidecar.economics.cache_store import CacheBackend, CacheStats
from sluice_sidecar.economics.latency_model import LatencyHistory
from sluice_sidecar.economics.ledger import UsageLedger
from sluice_sidecar.economics.sessions import SessionBook
from sluice_sidecar.economics.workload_advice import WorkloadAdvisor
from sluice_sidecar.observability.prometheus import Metrics
from sluice_sidecar.pipeline.batching import BatchingStage
from sluice_sidecar.pipeline.budget import BudgetStage
from sluice_sidecar.pipeline.cache import CacheStage
from sluice_sidecar.pipeline.call import Next, Stage
from sluice_sidecar.pipeline.circuit import CircuitStage
from sluice_sidecar.pipeline.coalesce import CoalesceStage
from sluice_sidecar.pipeline.degrade import DegradeStage
from sluice_sidecar.pipeline.fallback import FallbackStage
from sluice_sidecar.pipeline.latency import LatencyStage
from sluice_sidecar.pipeline.metering import MeteringStage
from sluice_sidecar.pipeline.queue import PriorityQueueStage
from sluice_sidecar.pipeline.retry import RetryStage
from sluice_sidecar.pipeline.upstream import UpstreamStage
from sluice_sidecar.resilience.breaker import BreakerRegistry
from sluice_sidecar.transports.base import Transport


@dataclass(frozen=True, slots=True)
class Dependencies:
    """The long-lived objects the stages share; they outlive every configuration swap."""

    transport: Transport
    metrics: Metrics
    usage: UsageLedger
    sessions: SessionBook
    advisor: WorkloadAdvisor  # workload-wide parameter suggestions, fed like the ledger
    latency: LatencyHistory
    cache_backend: Callable[[CacheSpec], CacheBackend]  # the back-end a configuration asks for
    cache_stats: CacheStats
    batch_stats: BatchStats
    budgets: BudgetLedger
    breakers: BreakerRegistry


@dataclass(frozen=True, slots=True)
class Pipeline:
    run: Next  # the whole chain: a call in, its reply out
    queue: PriorityQueueStage  # its depth and in-flight count are read by GET /admin/batching


def build_pipeline(deps: Dependencies) -> Pipeline:
    """The stages in the order of the table above, bound to the long-lived dependencies."""
    queue = PriorityQueueStage(deps.batch_stats, deps.metrics)
    stages: list[Stage] = [
        DegradeStage(deps.budgets, deps.metrics),
        MeteringStage(deps.metrics, [deps.usage.record, deps.sessions.record, deps.advisor.record]),
        LatencyStage(deps.latency, deps.metrics),
        CacheStage(deps.cache_backend, deps.cache_stats, deps.metrics),
        CoalesceStage(deps.batch_stats, deps.metrics),
        BudgetStage(deps.budgets),
        BatchingStage(deps.batch_stats, deps.metrics),
        queue,
        FallbackStage(deps.metrics),
        RetryStage(deps.metrics, deps.breakers),
        CircuitStage(deps.metrics, deps.breakers),
    ]
    return Pipeline(compose(stages, UpstreamStage(deps.transport)), queue)


def compose(stages: Sequence[Stage], terminal: Next) -> Next:
    """Chain stages so that ``stages[0]`` runs first and ``terminal`` last."""
    handler = terminal
    for stage in reversed(stages):
        handler = _bind(stage, handler)
    return handler


def _bind(stage: Stage, next_stage: Next) -> Next:
    # A partial, not a wrapping coroutine: calling it returns the stage's own coroutine, so a
    # call pays one coroutine per stage instead of two.
    return functools.partial(stage, next_stage=next_stage)
