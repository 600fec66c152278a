"""Prometheus metrics of the sidecar; the only module that imports prometheus_client.

Names follow the reference design where it follows Prometheus conventions: ``llm_*`` for the
LLM traffic, ``sluice_*`` for the sidecar's own machinery (configuration, limits, Redis, state
file). Rates and shares (error rate, cache hit rate, budget utilization, ...) are recording
rules over these series (helm/sluice/files/prometheus/rules.yaml); docs/sidecar.md "Metrics"
maps every reference name to its series or rule. Each application gets its own registry, so
tests can run several sidecars in one process.

Labels are bounded: model names past ``MAX_MODELS`` distinct ones are counted as "other",
histograms carry a status class (2xx, 4xx, 5xx), never a code, and no label holds a session,
a prompt or another caller-chosen value beyond model and operation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sluice_sidecar.errors import (
    BudgetExceeded,
    DeadlineExceeded,
    PermanentUpstreamError,
    QueueFull,
    Refused,
    RequestError,
    SluiceError,
    TransientUpstreamError,
)

MAX_MODELS = 200
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
# A first token comes sooner than a whole answer: finer at the low end.
FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

# The error tree's branches (errors.py), the `class` label of llm_errors_by_type_total.
ERROR_CLASSES: tuple[tuple[type[SluiceError], str], ...] = (
    (RequestError, "request"),
    (Refused, "refused"),
    (QueueFull, "queue"),
    (BudgetExceeded, "budget"),
    (DeadlineExceeded, "deadline"),
    (TransientUpstreamError, "transient"),
    (PermanentUpstreamError, "permanent"),
)

__all__ = ["CONTENT_TYPE_LATEST", "Children", "Metrics"]


class Children:
    """A labelled metric's children by their label values, for the metrics every call touches.

    ``labels()`` validates and converts its values and takes the metric's lock on every call
    (about 2 µs); a call touches half a dozen such series, the same few over and over. Only for
    metrics whose children are never removed, and values that are already strings.
    """

    __slots__ = ("_found", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._found: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._found.get(values)
        if child is None:
            child = self._found[values] = self._metric.labels(*values)
        return child


class Metrics:
    def __init__(self) -> None:
        # The *_created series double the exposition for no use on dashboards (a process-wide
        # switch of prometheus_client, set here rather than at import).
        disable_created_metrics()
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
            "Time from request received to answer finished (streams included), in seconds, by"
            " status class (2xx, 4xx, 5xx).",
            ["provider", "model", "operation", "status_class"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            "llm_time_to_first_token_seconds",
            "Streams: time from request received to the first chunk relayed, in seconds.",
            ["provider", "model", "operation"],
            buckets=FIRST_TOKEN_BUCKETS,
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
            "llm_retries",
            "Retries, by provider, reason and the policy's retry strategy.",
            ["provider", "reason", "strategy"],
            registry=r,
        )
        self.errors = Counter(
            "llm_errors_by_type",
            "Errors answered to callers or absorbed by retries, by error type, class (request,"
            " refused, queue, budget, deadline, transient, permanent, internal) and model.",
            ["type", "class", "provider", "model"],
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
        self.breaker_changes = Counter(
            "llm_circuit_breaker_state_changes",
            "Circuit breaker state changes, by the state left and the state entered.",
            ["provider", "model", "from_state", "to_state"],
            registry=r,
        )
        self.breaker_rejections = Counter(
            "llm_circuit_breaker_rejections",
            "Attempts a breaker refused at once: open (or half-open with its trial call in"
            " flight), or its bulkhead full.",
            ["provider", "model", "reason"],
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
            "llm_tokens_used",
            "Tokens reported by providers, by kind (input, output, cached_input).",
            ["provider", "model", "operation", "kind"],
            registry=r,
        )
        self.cost = Counter(
            "llm_token_costs_usd",
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
        self.unanswered_attempts = Counter(
            "llm_unanswered_attempts",
            "Attempts sent upstream that got no answer (dropped, invalid, timed out) and that the"
            " provider may still bill; charged to budgets at their worst case.",
            ["provider", "model"],
            registry=r,
        )
        self.unanswered_cost = Counter(
            "llm_unanswered_cost_usd",
            "Worst-case cost in US dollars of attempts sent and never answered.",
            ["provider", "model"],
            registry=r,
        )
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
        self.budget_limit = Gauge(
            "llm_budget_limit_usd",
            "The budget's cost limit per period, in US dollars (absent: no cost limit).",
            ["budget"],
            registry=r,
        )
        self.budget_tokens = Gauge(
            "llm_budget_spent_tokens",
            "Input+output tokens in the budget's current period (this sidecar's view).",
            ["budget"],
            registry=r,
        )
        self.budget_token_limit = Gauge(
            "llm_budget_limit_tokens",
            "The budget's token limit per period (absent: no token limit).",
            ["budget"],
            registry=r,
        )
        self.budget_threshold = Gauge(
            "llm_budget_threshold_ratio",
            "The budget's warning and alert thresholds, as shares of its limit.",
            ["budget", "level"],
            registry=r,
        )
        self.budget_refusals = Counter(
            "llm_budget_refusals",
            "Calls over a budget: refused (hard) or let through (soft), by limit kind.",
            ["budget", "reason", "enforcement"],
            registry=r,
        )
        self.budget_degradations = Counter(
            "llm_budget_degradations",
            "Calls a budget past its degrade threshold moved to a cheaper model or preset.",
            ["budget", "operation"],
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
        self.batch_size = Histogram(
            "llm_batch_size",
            "Caller calls merged into one upstream embeddings call.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
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
            "sluice_limits_hit",
            "Requests refused or connections closed by a boundary limit, by limit"
            " (body_size, body_time, header_time, send_time, http_parse, json_depth,"
            " name_length, name_chars, header_length, header_chars).",
            ["limit"],
            registry=r,
        )
        self._models: set[str] = set()
        # The series of every call, looked up without labels() (see Children).
        self.attempt = Children(self.attempts)
        self.first_token_of = Children(self.first_token)
        self.tokens_of = Children(self.tokens)
        self.cost_of = Children(self.cost)
        self._answered: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
        # Each budget's gauge series, so that a budget the configuration dropped loses them.
        self._budget_series: dict[str, set[tuple[Gauge, tuple[str, ...]]]] = {}

    def model_label(self, model: str) -> str:
        if model in self._models:
            return model
        if len(self._models) < MAX_MODELS:
            self._models.add(model)
            return model
        return "other"

    def answered(
        self, provider: str, model: str, operation: str, status: int, seconds: float
    ) -> None:
        """A call is over: counted by its status code, timed by its status class."""
        key = (provider, model, operation, status)
        children = self._answered.get(key)
        if children is None:
            children = self._answered[key] = (
                self.requests.labels(provider, model, operation, str(status)),
                self.duration.labels(provider, model, operation, f"{status // 100}xx"),
            )
        children[0].inc()
        children[1].observe(seconds)

    def error(
        self, error: SluiceError, provider: str = "none", model: str = "-", *, retried: bool = False
    ) -> None:
        """An error answered to a caller, or (``retried``) one a retry absorbed, typed then by
        the upstream's reason ("rate_limit_exceeded") rather than its code."""
        reason = getattr(error, "reason", None) if retried else None
        kind = reason_label(reason) if reason else error.code
        self.errors.labels(kind, error_class(error), provider, model).inc()

    def retried(self, provider: str, reason: str, strategy: str) -> None:
        """One retry of an upstream failure, by its reason as an identifier (docs/observability.md
        lists the values)."""
        self.retries.labels(provider, reason_label(reason), strategy).inc()

    def budget(
        self,
        budget: str,
        *,
        spent_usd: float,
        limit_usd: float | None,
        tokens: int,
        token_limit: int | None,
        thresholds: dict[str, float],
    ) -> None:
        """A budget's spend and limits after a settlement; rules compute its utilization.

        A limit the budget no longer has loses its series."""
        series = self._budget_series.setdefault(budget, set())
        values = (budget,)
        for gauge, value in (
            (self.budget_spent, spent_usd),
            (self.budget_tokens, tokens),
            (self.budget_limit, limit_usd),
            (self.budget_token_limit, token_limit),
        ):
            if value is not None:
                gauge.labels(budget).set(value)
                series.add((gauge, values))
            elif (gauge, values) in series:
                series.discard((gauge, values))
                gauge.remove(budget)
        for level, share in thresholds.items():
            self.budget_threshold.labels(budget, level).set(share)
            series.add((self.budget_threshold, (budget, level)))

    def keep_budgets(self, budgets: Iterable[str]) -> None:
        """Remove the gauges of every budget not in ``budgets`` (those of the configuration just
        applied): a dropped budget's spend and limits must not be reported until a restart.
        Its refusal and threshold counters stay, as counters do."""
        for budget in set(self._budget_series) - set(budgets):
            for gauge, values in self._budget_series.pop(budget):
                gauge.remove(*values)

    def set_config_version(self, version: str) -> None:
        self.config_info.clear()
        self.config_info.labels(version).set(1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def reason_label(reason: str) -> str:
    """An upstream failure's reason ("rate limit exceeded", "HTTP 418") as a label value:
    a snake_case identifier ("rate_limit_exceeded", "http_418")."""
    return reason.strip().lower().replace(" ", "_")


def error_class(error: SluiceError) -> str:
    for kind, name in ERROR_CLASSES:
        if isinstance(error, kind):
            return name
    return "internal"
