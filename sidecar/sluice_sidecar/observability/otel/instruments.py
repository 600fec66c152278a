"""The metric instruments: the GenAI client metrics, and Sluice's own under ``sluice.*``.

Names, units and bucket boundaries of the GenAI ones are the semantic conventions' (the
``gen_ai_metrics`` constants; boundaries from the conventions' text, which the package's
``create_*`` helpers leave out).
"""

from __future__ import annotations

from typing import Final

from opentelemetry.metrics import Meter
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics

# Both from the GenAI metrics conventions ("SHOULD be specified with ExplicitBucketBoundaries").
TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
SECONDS_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
QUEUE_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60)


class Instruments:
    """Created once per meter provider; recorded by ``calls.CallHandle``."""

    def __init__(self, meter: Meter) -> None:
        self.duration = meter.create_histogram(
            gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )
        self.tokens = meter.create_histogram(
            gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.time_to_first_chunk = meter.create_histogram(
            gen_ai_metrics.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time to receive the first chunk of a streamed answer.",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )
        self.time_per_output_chunk = meter.create_histogram(
            gen_ai_metrics.GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK,
            unit="s",
            description="Time between consecutive chunks of a streamed answer, after the first.",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )
        self.cost = meter.create_counter(
            "sluice.client.cost",
            unit="{USD}",
            description="Cost of answered calls in US dollars, from the price table.",
        )
        self.cache_requests = meter.create_counter(
            "sluice.cache.requests",
            unit="{request}",
            description="Calls that went through the answer cache, by sluice.cache.result.",
        )
        self.cache_saved = meter.create_counter(
            "sluice.cache.saved_cost",
            unit="{USD}",
            description="Cost of the calls answered from the cache, in US dollars.",
        )
        self.coalesced = meter.create_counter(
            "sluice.coalesced",
            unit="{request}",
            description="Calls that shared an identical call already in flight.",
        )
        self.retries = meter.create_counter(
            "sluice.retries",
            unit="{retry}",
            description="Retries of an upstream attempt, by provider and reason.",
        )
        self.fallbacks = meter.create_counter(
            "sluice.fallbacks",
            unit="{fallback}",
            description="Calls moved from one provider to the next.",
        )
        self.breaker_refusals = meter.create_counter(
            "sluice.breaker.refusals",
            unit="{request}",
            description="Attempts refused because the provider's circuit breaker is open.",
        )
        self.budget_refusals = meter.create_counter(
            "sluice.budget.refusals",
            unit="{request}",
            description="Calls over a budget: refused (hard) or let through (soft).",
        )
        self.queue_wait = meter.create_histogram(
            "sluice.queue.wait",
            unit="s",
            description="Time calls waited in the priority queue.",
            explicit_bucket_boundaries_advisory=QUEUE_BUCKETS,
        )
