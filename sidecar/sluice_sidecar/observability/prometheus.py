"""Prometheus metrics of the sidecar; the only module that imports prometheus_client.

Metric names follow the reference design (``llm_*``). Each application gets its own registry,
so tests can run several sidecars in one process. Label values that come from callers (model
names) are bounded: past ``MAX_MODELS`` distinct models, new ones are counted as "other".
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# The *_created series double the exposition for no use on dashboards.
disable_created_metrics()

MAX_MODELS = 200
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "llm_requests",
            "LLM calls answered by the sidecar, by final status.",
            ["provider", "model", "operation", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "llm_request_duration_seconds",
            "Time from request received to answer finished (streams included), in seconds.",
            ["provider", "model", "operation", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "llm_requests_in_flight", "LLM calls currently being handled.", registry=r
        )
        self.attempts = Counter(
            "llm_upstream_attempts",
            "Calls sent to a provider (each retry and fallback counts), by outcome.",
            ["provider", "model", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "llm_retries", "Retries, by provider and reason.", ["provider", "reason"], registry=r
        )
        self.errors = Counter(
            "llm_errors_by_type",
            "Errors answered to callers or absorbed by retries, by error type.",
            ["type"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "llm_circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["provider", "model"],
            registry=r,
        )
        self.breaker_trips = Counter(
            "llm_circuit_breaker_trips",
            "Times a circuit breaker opened.",
            ["provider", "model"],
            registry=r,
        )
        self.timeout_warnings = Counter(
            "llm_timeout_warnings",
            "Calls that passed their operation's warning threshold.",
            ["operation"],
            registry=r,
        )
        self.fallbacks = Counter(
            "llm_fallbacks",
            "Calls moved from one provider to the next.",
            ["from_provider", "to_provider"],
            registry=r,
        )
        self.config_info = Gauge(
            "sluice_config_info",
            "The active configuration version (value 1).",
            ["version"],
            registry=r,
        )
        self.config_reloads = Counter(
            "sluice_config_reloads", "Configuration loads, by result.", ["result"], registry=r
        )
        self.tokens = Counter(
            "llm_tokens",
            "Tokens reported by providers, by kind (input, output, cached_input).",
            ["provider", "model", "operation", "kind"],
            registry=r,
        )
        self.cost = Counter(
            "llm_cost_usd",
            "Cost of answered calls in US dollars, from the price table.",
            ["provider", "model", "operation"],
            registry=r,
        )
        self.unpriced = Counter(
            "llm_unpriced_model",
            "Calls whose model has no price (bundled table or policy pricing).",
            ["provider", "model"],
            registry=r,
        )
        self.usage_unknown = Counter(
            "llm_usage_unknown",
            "Answered calls whose usage the provider did not report.",
            ["provider", "model"],
            registry=r,
        )
        # Economics hardening: spend charged on an estimate, budget state the writer could not
        # save.
        self.usage_estimated = Counter(
            "llm_usage_estimated",
            "Calls charged on their estimate because the provider's usage never arrived, by"
            " reason (cancelled: the caller left or the deadline passed after the call was sent;"
            " cut: a stream ended before its final usage).",
            ["provider", "model", "reason"],
            registry=r,
        )
        self.state_write_errors = Counter(
            "sluice_state_write_errors",
            "Budget state file writes that failed or left records out, by reason"
            " (encode, io, internal); the writer carries on.",
            ["reason"],
            registry=r,
        )
        self.budget_spent = Gauge(
            "llm_budget_spent_usd",
            "Spend in the budget's current period (this sidecar's view), in US dollars.",
            ["budget"],
            registry=r,
        )
        self.budget_utilization = Gauge(
            "llm_budget_utilization",
            "Share of the budget's limit used in the current period (cost or tokens, the larger).",
            ["budget"],
            registry=r,
        )
        self.budget_refusals = Counter(
            "llm_budget_refusals",
            "Calls over a budget: refused (hard) or let through (soft), by limit kind.",
            ["budget", "reason", "enforcement"],
            registry=r,
        )
        self.budget_thresholds = Counter(
            "llm_budget_threshold_crossings",
            "Times a budget's utilisation crossed a threshold (Warning, Alert, Exceeded).",
            ["budget", "level"],
            registry=r,
        )
        self.cache_requests = Counter(
            "llm_cache_requests",
            "Calls that went through the answer cache, by result (hit, miss, bypass).",
            ["result"],
            registry=r,
        )
        self.cache_saved = Counter(
            "llm_cache_saved_usd",
            "Cost of the calls answered from the cache, in US dollars.",
            registry=r,
        )
        self.cache_evictions = Counter(
            "llm_cache_evictions",
            "Entries evicted from the memory cache to stay within its bounds.",
            registry=r,
        )
        self.cache_entries = Gauge("llm_cache_entries", "Entries in the memory cache.", registry=r)
        self.cache_bytes = Gauge(
            "llm_cache_bytes", "Bytes of answers held in the memory cache.", registry=r
        )
        self.queue_depth = Gauge(
            "llm_queue_depth", "Calls waiting for a slot in the priority queue.", registry=r
        )
        self.queue_wait = Histogram(
            "llm_queue_wait_seconds",
            "Time calls waited in the priority queue, by priority.",
            ["priority"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60),
            registry=r,
        )
        self.queue_rejections = Counter(
            "llm_queue_rejections",
            "Calls refused with 429 by the priority queue, by reason (queue_full, wait_timeout).",
            ["priority", "reason"],
            registry=r,
        )
        self.batched = Counter(
            "llm_batched_requests",
            "Caller calls merged into a shared upstream call, by how (coalesced, embeddings).",
            ["how"],
            registry=r,
        )
        self.batches = Counter(
            "llm_batches", "Upstream embeddings calls made for merged calls.", registry=r
        )
        self.latency_anomalies = Counter(
            "llm_latency_anomalies",
            "Calls slower than the predicted range's top times latency.anomalyFactor.",
            ["provider", "operation"],
            registry=r,
        )
        self.redis_errors = Counter(
            "sluice_redis_errors",
            "Redis operations that failed; the sidecar went on without Redis for them.",
            ["use"],
            registry=r,
        )
        # Boundary limits (docs/sidecar.md "Limits"): requests and connections refused by one.
        self.refused = Counter(
            "llm_requests_refused",
            "Requests refused or connections closed by a boundary limit, by limit"
            " (body_size, body_time, header_time, send_time, http_parse, json_depth,"
            " name_length, name_chars, header_length, header_chars).",
            ["limit"],
            registry=r,
        )
        self._models: set[str] = set()

    def model_label(self, model: str) -> str:
        if model in self._models:
            return model
        if len(self._models) < MAX_MODELS:
            self._models.add(model)
            return model
        return "other"

    def set_config_version(self, version: str) -> None:
        self.config_info.clear()
        self.config_info.labels(version).set(1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
