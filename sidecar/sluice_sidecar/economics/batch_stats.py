"""Statistics of coalescing, embeddings batching and the priority queue (``GET /admin/batching``).

Shared by the coalesce, batching and queue stages (which do not import each other). Bounded: the
queue-wait ring keeps the last ``WAIT_SAMPLES`` waits.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sluice_sidecar.economics.stats import percentile

WAIT_SAMPLES = 2048


@dataclass(slots=True)
class BatchStats:
    coalesced: int = 0  # calls answered from an identical call in flight
    batches: int = 0  # upstream embeddings calls made for merged calls
    requests_batched: int = 0  # caller calls that went into those
    inputs_batched: int = 0
    queued: int = 0
    queue_rejected: int = 0
    waits_s: deque[float] = field(default_factory=lambda: deque(maxlen=WAIT_SAMPLES))

    def as_json(self, *, depth: int, in_flight: int) -> dict[str, Any]:
        waits = sorted(self.waits_s)
        average = self.requests_batched / self.batches if self.batches else 0.0
        efficiency = 1 - self.batches / self.requests_batched if self.requests_batched else 0.0
        return {
            "coalesced": self.coalesced,
            "batches": self.batches,
            "requestsBatched": self.requests_batched,
            "inputsBatched": self.inputs_batched,
            "averageBatchSize": round(average, 3),
            "batchEfficiency": round(efficiency, 4),
            "queue": {
                "depth": depth,
                "inFlight": in_flight,
                "queued": self.queued,
                "rejected": self.queue_rejected,
                "waitP95Ms": round(percentile(waits, 0.95) * 1000, 2),
            },
        }
