"""Configuration sections of the economics stages: pricing, cache, batching, queue, budgets.

Used by ``config.model`` (as sections of ``LlmPolicySpec`` and ``SidecarConfig``) and by the
operator, which generates CRD schemas from them: plain types only, every field with a default
and a description. Money is ``Decimal`` (``config.base.Money``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from sluice_sidecar.contract.base import NAME_PATTERN, Money, Spec

BudgetPeriod = Literal["daily", "weekly", "monthly", "total"]
Enforcement = Literal["hard", "soft"]
CacheBackend = Literal["memory", "redis"]


class ModelPriceSpec(Spec):
    """Price of one model in US dollars per million tokens."""

    input_per_1m: Money = Field(alias="inputPer1M", description="USD per 1M input tokens.")
    output_per_1m: Money = Field(alias="outputPer1M", description="USD per 1M output tokens.")
    cached_input_per_1m: Money | None = Field(
        default=None,
        alias="cachedInputPer1M",
        description="USD per 1M cached input tokens; null: the input price.",
    )


# Model name (or glob, or "provider/model") -> price. Overrides the bundled table.
PricingSpec = dict[str, ModelPriceSpec]


class CacheSpec(Spec):
    """Exact-match answer cache."""

    enabled: bool = Field(default=False, description="Cache answers of this workload at all.")
    backend: CacheBackend = Field(
        default="memory",
        description="memory (per process) or redis (shared; needs SLUICE_REDIS_URL, else memory).",
    )
    ttl_seconds: int = Field(default=3600, ge=1, le=30 * 86_400, description="Entry lifetime.")
    max_entries: int = Field(default=10_000, ge=1, le=10_000_000, description="Memory LRU bound.")
    max_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="Memory LRU bound on stored answer bytes."
    )
    max_entry_bytes: int = Field(
        default=1024 * 1024, ge=256, description="Answers larger than this are not cached."
    )
    temperature_ceiling: float = Field(
        default=0.3,
        ge=0,
        le=2,
        description="Only calls with temperature <= this are cached, unless the operation "
        "enables caching explicitly. A call without temperature counts as 1.0.",
    )


class OperationCacheSpec(Spec):
    """Per-operation cache switch: set ``enabled`` to cache whatever the temperature."""

    enabled: bool | None = Field(
        default=None, description="true: cache this operation always; false: never; null: policy."
    )
    ttl_seconds: int | None = Field(
        default=None, ge=1, le=30 * 86_400, description="null: the policy's ttlSeconds."
    )
    stale_if_error_seconds: int | None = Field(
        default=None,
        ge=1,
        le=7 * 86_400,
        description="When every provider fails, answer from an entry at most this long past its "
        "TTL (x-sluice-cache: stale); null: never.",
    )


class EmbeddingsBatchSpec(Spec):
    enabled: bool = Field(default=False, description="Merge concurrent embeddings calls.")
    max_batch_size: int = Field(default=16, ge=1, le=2048, description="Inputs per upstream call.")
    max_wait_ms: int = Field(default=10, ge=0, le=1000, description="Longest wait to fill a batch.")


class BatchingSpec(Spec):
    coalesce_identical: bool = Field(
        default=True, description="Identical cacheable calls in flight share one upstream call."
    )
    embeddings: EmbeddingsBatchSpec = Field(default_factory=EmbeddingsBatchSpec)


class QueueSpec(Spec):
    """Priority admission (header X-LLM-Priority: low, normal, high, critical)."""

    max_concurrent: int | None = Field(
        default=None, ge=1, description="Calls in flight at once; null: no limit, no queue."
    )
    max_length: int = Field(default=1000, ge=0, description="Calls waiting; beyond: 429.")
    max_wait_ms: int = Field(
        default=30_000, ge=0, le=600_000, description="Longest wait in the queue; beyond: 429."
    )


class AdaptiveTimeoutSpec(Spec):
    """Attempt timeouts learned from the latency history (the performance guide's adaptive
    timeouts): an attempt is abandoned after the history's ``percentile`` x ``factor``, within
    ``floorSeconds`` and ``ceilingSeconds``, and retried; the call's own deadline is unchanged."""

    enabled: bool = Field(default=False, description="Off: attempts run to the call's deadline.")
    percentile: float = Field(default=0.99, ge=0.5, le=1, description="Of the learned durations.")
    factor: float = Field(default=2.0, ge=1, le=20, description="Times the percentile.")
    floor_seconds: float = Field(default=1.0, gt=0, le=3600, description="Never shorter.")
    ceiling_seconds: float | None = Field(
        default=None, gt=0, le=3600, description="Never longer; null: the call's timeout."
    )
    min_samples: int = Field(
        default=20, ge=5, le=100, description="Calls in the history before it is trusted."
    )

    @model_validator(mode="after")
    def _check(self) -> AdaptiveTimeoutSpec:
        if self.ceiling_seconds is not None and self.ceiling_seconds < self.floor_seconds:
            raise ValueError("ceilingSeconds must be >= floorSeconds")
        return self


class LatencySpec(Spec):
    anomaly_factor: float = Field(
        default=2.0, ge=1, le=100, description="A call slower than the predicted top times this."
    )
    heartbeat_seconds: float | None = Field(
        default=5.0,
        ge=0.05,
        le=300,
        description="Streams: an SSE comment this often while waiting for the first token; "
        "null: none.",
    )
    adaptive_timeout: AdaptiveTimeoutSpec = Field(
        default_factory=AdaptiveTimeoutSpec,
        description="Attempt timeouts from the learned latency, for every operation (off).",
    )


class WorkloadRef(Spec):
    """Who this sidecar serves: part of the cache key and of usage reports."""

    namespace: str = Field(default="default", min_length=1, max_length=253)
    name: str = Field(default="standalone", min_length=1, max_length=253)

    @property
    def identity(self) -> str:
        return f"{self.namespace}/{self.name}"


class BudgetScope(Spec):
    provider: str | None = Field(default=None, description="Only calls to this provider count.")
    model: str | None = Field(default=None, description="Only calls for this model (glob) count.")


class BudgetLimits(Spec):
    cost_usd: Money | None = Field(default=None, alias="costUSD", description="Per period.")
    tokens: int | None = Field(default=None, ge=1, description="Input+output tokens per period.")
    per_request_cost_usd: Money | None = Field(
        default=None, alias="perRequestCostUSD", description="Estimated cost of one call."
    )
    per_session_cost_usd: Money | None = Field(
        default=None, alias="perSessionCostUSD", description="Per X-LLM-Session, per period."
    )
    per_request_tokens: int | None = Field(
        default=None, ge=1, description="Input+output tokens one call may use (its estimate)."
    )
    per_session_tokens: int | None = Field(
        default=None, ge=1, description="Input+output tokens per X-LLM-Session, per period."
    )


class BudgetThresholds(Spec):
    warning: float = Field(default=0.75, gt=0, le=1, description="Utilisation that warns.")
    alert: float = Field(default=0.90, gt=0, le=1, description="Utilisation that alerts.")

    @model_validator(mode="after")
    def _check(self) -> BudgetThresholds:
        if not self.warning < self.alert <= 1:
            raise ValueError("thresholds must satisfy warning < alert <= 1")
        return self


class BudgetDegradeSpec(Spec):
    """Near its limit, a budget moves matching calls to a cheaper model or a leaner preset."""

    at: Literal["warning", "alert"] = Field(
        default="alert", description="From which threshold on (the budget's thresholds)."
    )
    operations: list[str] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        max_length=256,
        description="Operation names (globs) that degrade.",
    )
    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Model the calls use instead (a candidate provider must serve it).",
    )
    max_tokens: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Caps the call's output tokens."
    )
    temperature: float | None = Field(
        default=None, ge=0, le=2, description="Replaces the call's temperature."
    )

    @model_validator(mode="after")
    def _check(self) -> BudgetDegradeSpec:
        if self.model is None and self.max_tokens is None and self.temperature is None:
            raise ValueError("degrade needs a model, maxTokens or temperature")
        return self


class BudgetRules(Spec):
    """What a budget limits; shared by the LlmBudget spec and its compiled form."""

    scope: BudgetScope = Field(default_factory=BudgetScope)
    period: BudgetPeriod = Field(default="monthly", description="UTC calendar period.")
    limits: BudgetLimits = Field(default_factory=BudgetLimits)
    thresholds: BudgetThresholds = Field(default_factory=BudgetThresholds)
    enforcement: Enforcement = Field(
        default="hard", description="hard: refuse at 100 %; soft: log and metric only."
    )
    degrade: BudgetDegradeSpec | None = Field(
        default=None, description="Cheaper model or leaner preset past a threshold; null: off."
    )


class LlmBudgetSpec(BudgetRules):
    selector: dict[str, Any] | None = Field(
        default=None, description="Workload label selector; null: the whole namespace."
    )


class CompiledBudget(BudgetRules):
    """One LlmBudget as a sidecar enforces it, named by the resource's namespace/name."""

    namespace: str = Field(default="default", description="The LlmBudget's namespace.")
    name: str = Field(default="budget", pattern=NAME_PATTERN, description="The LlmBudget's name.")

    @property
    def identity(self) -> str:
        return f"{self.namespace}/{self.name}"
