"""The one place the request pipeline is put together, once, at start-up.

Order, outermost first:

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

from collections.abc import Sequence

from sluice_sidecar.pipeline.call import Call, Next, Stage
from sluice_sidecar.transports.base import UpstreamReply


def compose(stages: Sequence[Stage], terminal: Next) -> Next:
    """Chain stages so that ``stages[0]`` runs first and ``terminal`` last."""
    handler = terminal
    for stage in reversed(stages):
        handler = _bind(stage, handler)
    return handler


def _bind(stage: Stage, next_stage: Next) -> Next:
    async def run(call: Call) -> UpstreamReply:
        return await stage(call, next_stage)

    return run
