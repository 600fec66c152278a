"""Pydantic models of the LlmPolicy spec and of the compiled SidecarConfig.

Field names follow Kubernetes conventions (camelCase in YAML/JSON, snake_case in Python). Every
model is frozen and forbids unknown fields: a typo in a policy is an error, never silently
ignored. Validation happens once, when a configuration is loaded; the request path only reads
the runtime objects built from it (``sluice_sidecar.pipeline.runtime``).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sluice_sidecar.contract.base import NAME_PATTERN, Spec
from sluice_sidecar.contract.economics import (
    AdaptiveTimeoutSpec,
    BatchingSpec,
    CacheSpec,
    CompiledBudget,
    LatencySpec,
    LlmBudgetSpec,
    OperationCacheSpec,
    PricingSpec,
    QueueSpec,
    WorkloadRef,
)

OPERATION_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
# RFC 9110 field names are tokens; anything else makes aiohttp refuse every call at send time.
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")

ProviderType = Literal["openai", "openai-compatible", "anthropic", "openrouter"]
RetryStrategy = Literal["exponential", "linear", "fixed", "fibonacci", "adaptive"]
OperationName = Annotated[str, Field(pattern=OPERATION_PATTERN)]
FilePath = Annotated[str, Field(min_length=1, max_length=4096)]

DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "openrouter": "https://openrouter.ai/api/v1",
}


class SecretKeyRef(Spec):
    name: str = Field(pattern=NAME_PATTERN, description="Secret in the policy's namespace.")
    key: str = Field(min_length=1, description="Key inside the Secret holding the API key.")


class ProviderSpec(Spec):
    """One upstream provider. Order in the list is preference: first primary, then fallbacks."""

    name: str = Field(pattern=NAME_PATTERN, description="Unique name, used in metrics and logs.")
    type: ProviderType = Field(description="Wire format and authentication of the provider.")
    base_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        description="API root, e.g. https://api.openai.com/v1. Required for openai-compatible.",
    )
    api_key_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret holding the key; mounted into the sidecar as a file."
    )
    api_key_file: str | None = Field(default=None, description="File holding the API key.")
    api_key_env: str | None = Field(
        default=None, description="Environment variable of the sidecar holding the API key."
    )
    auth_header: str | None = Field(
        default=None,
        description="Header carrying the key. Default: Authorization (Bearer) or x-api-key.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra static headers sent upstream (api-version...)."
    )
    models: list[str] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        description="Glob patterns of the model names this provider serves.",
    )
    model_map: dict[str, str] = Field(
        default_factory=dict, description="Requested model name -> name sent to this provider."
    )
    display_name: str | None = Field(default=None, description="Name used in log messages.")

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, url: str | None) -> str | None:
        if url is None:
            return url
        try:
            parts = urlsplit(url)
            port = parts.port  # parsing it is the check (digits, 0-65535)
        except ValueError as error:
            raise ValueError(f"baseUrl {url!r} is not a valid URL: {error}") from error
        if port == 0:
            raise ValueError(f"baseUrl {url!r} has port 0")
        if not parts.hostname:
            raise ValueError(f"baseUrl has no host: {url!r}")
        return url

    @field_validator("auth_header")
    @classmethod
    def _check_auth_header(cls, name: str | None) -> str | None:
        if name is not None and not HEADER_NAME.match(name):
            raise ValueError(f"authHeader must be an HTTP header name (a token), not {name!r}")
        return name

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not HEADER_NAME.match(name):
                raise ValueError(f"headers: {name!r} is not an HTTP header name")
            if not _printable(value):
                raise ValueError(f"headers: the value of {name} has control characters")
        return headers

    @field_validator("display_name")
    @classmethod
    def _check_display_name(cls, name: str | None) -> str | None:
        if name is not None and not _printable(name):
            raise ValueError("displayName has control characters")
        return name

    @model_validator(mode="after")
    def _check(self) -> ProviderSpec:
        if self.type == "openai-compatible" and not self.base_url:
            raise ValueError("baseUrl is required for providers of type openai-compatible")
        sources = [self.api_key_secret_ref, self.api_key_file, self.api_key_env]
        if sum(source is not None for source in sources) > 1:
            raise ValueError("set at most one of apiKeySecretRef, apiKeyFile, apiKeyEnv")
        return self

    @property
    def api_family(self) -> Literal["openai", "anthropic"]:
        return "anthropic" if self.type == "anthropic" else "openai"

    @property
    def effective_base_url(self) -> str:
        return (self.base_url or DEFAULT_BASE_URLS[self.type]).rstrip("/")


class PresetSpec(Spec):
    """Request parameters an operation fills in when the request leaves them unset."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    top_p: float | None = Field(default=None, ge=0, le=1)
    force: bool = Field(default=False, description="Override values the request did set.")


class RetrySpec(Spec):
    strategy: RetryStrategy = "exponential"
    max_attempts: int = Field(
        default=4, ge=1, le=10, description="Attempts per provider, the first one included."
    )
    base_delay_ms: int = Field(default=1000, ge=0, le=600_000)
    max_delay_ms: int = Field(default=30_000, ge=0, le=600_000)
    jitter: bool = Field(default=True, description="Randomise delays to spread retry storms.")

    @model_validator(mode="after")
    def _check(self) -> RetrySpec:
        if self.max_delay_ms < self.base_delay_ms:
            raise ValueError("maxDelayMs must be >= baseDelayMs")
        return self


class ErrorClassPolicy(Spec):
    """What one class of upstream failure does; null: the class's default (transient classes
    retry, fall back and count against the breaker; permanent ones do none of these)."""

    retry: bool | None = Field(default=None, description="Retried at the same provider.")
    fallback: bool | None = Field(default=None, description="Moves the call to the next provider.")
    open_breaker: bool | None = Field(
        default=None, description="Counts as a failure towards opening the provider's breaker."
    )


class ErrorPolicySpec(Spec):
    """A policy per class of upstream failure (docs/configuration.md, errorPolicy)."""

    rate_limit: ErrorClassPolicy | None = Field(default=None, description="429.")
    overload: ErrorClassPolicy | None = Field(default=None, description="503, 529.")
    timeout: ErrorClassPolicy | None = Field(
        default=None, description="408, 504, an attempt timeout, a silent stream."
    )
    connection: ErrorClassPolicy | None = Field(default=None, description="No connection.")
    server_error: ErrorClassPolicy | None = Field(default=None, description="500, 502.")
    invalid_answer: ErrorClassPolicy | None = Field(
        default=None, description="A 2xx answer that is not valid JSON or a valid stream."
    )
    context_length: ErrorClassPolicy | None = Field(
        default=None, description="A 400 saying the prompt is longer than the model's window."
    )
    content_filter: ErrorClassPolicy | None = Field(
        default=None, description="A 400 from the provider's content filter."
    )
    auth: ErrorClassPolicy | None = Field(default=None, description="401, 403.")
    other: ErrorClassPolicy | None = Field(default=None, description="Any other error answer.")
    larger_window_model: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="After a contextLength failure, the call is made once more with this model "
        "(a larger window) at the providers that serve it; null: relayed as the policy says.",
    )


class HealthCheckSpec(Spec):
    """Active health checks of a provider whose circuit is open."""

    enabled: bool = Field(default=False, description="Probe providers with an open circuit.")
    interval_seconds: float = Field(default=10, ge=0.05, le=3600, description="Between probes.")
    path: str = Field(
        default="/models",
        pattern=r"^/[A-Za-z0-9/._~-]{0,255}$",
        description="GET under the provider's base URL (Anthropic: under /v1).",
    )


class CircuitBreakerSpec(Spec):
    enabled: bool = True
    scope: Literal["provider", "provider-model"] = "provider-model"
    failure_threshold: int = Field(default=5, ge=1, description="Consecutive failures that trip.")
    failure_rate_threshold: float | None = Field(
        default=0.5, gt=0, le=1, description="Failure rate in the window that trips; null: off."
    )
    minimum_requests: int = Field(default=10, ge=1, description="Calls before the rate counts.")
    window_seconds: float = Field(default=60, gt=0, le=3600)
    success_threshold: int = Field(default=2, ge=1, description="Half-open successes to close.")
    open_seconds: float = Field(default=60, gt=0, le=86_400)
    max_open_seconds: float = Field(default=600, gt=0, le=86_400)
    open_backoff_multiplier: float = Field(
        default=2.0, ge=1, le=10, description="Each consecutive trip multiplies the open time."
    )
    # As many as the transport's connection limit (1000): a stream holds its slot for its
    # whole length, and 100 refused most calls at 200 concurrent streams (docs/performance.md).
    health_check: HealthCheckSpec = Field(
        default_factory=HealthCheckSpec,
        description="Probes of an open circuit's provider; successThreshold good ones close it.",
    )
    max_concurrent: int | None = Field(
        default=1000, ge=1, description="Bulkhead: calls in flight per breaker; null: unlimited."
    )

    @model_validator(mode="after")
    def _check(self) -> CircuitBreakerSpec:
        if self.max_open_seconds < self.open_seconds:
            raise ValueError("maxOpenSeconds must be >= openSeconds")
        return self


class DefaultsSpec(Spec):
    timeout_seconds: float = Field(default=60, gt=0, le=3600)
    warning_threshold: float = Field(default=0.5, gt=0, lt=1)
    max_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="Longest timeout X-LLM-Timeout may ask for; null: it can only shorten.",
    )
    unknown_operation: Literal["reject", "allow"] = Field(
        default="reject",
        description="An X-LLM-Operation no policy defines: 400 (reject) or default settings.",
    )


class OperationSpec(Spec):
    timeout_seconds: float | None = Field(default=None, gt=0, le=3600)
    warning_threshold: float | None = Field(default=None, gt=0, lt=1)
    max_timeout_seconds: float | None = Field(
        default=None, gt=0, le=3600, description="Longest X-LLM-Timeout; null: the default's."
    )
    adaptive_timeout: AdaptiveTimeoutSpec | None = Field(
        default=None, description="Adaptive attempt timeouts; null: latency.adaptiveTimeout."
    )
    preset: PresetSpec | None = None
    retry: RetrySpec | None = None
    providers: list[str] | None = Field(
        default=None, description="Provider names to use, in order (restricts the fallback list)."
    )
    cache: OperationCacheSpec | None = Field(
        default=None, description="Cache switch and TTL of this operation; null: the policy's."
    )


class LlmPolicySpec(Spec):
    selector: dict[str, Any] | None = Field(default=None, description="Workload label selector.")
    priority: int = Field(default=0, description="Higher wins when several policies match.")
    providers: list[ProviderSpec] | None = None
    defaults: DefaultsSpec | None = None
    operations: dict[OperationName, OperationSpec] = Field(default_factory=dict)
    retry: RetrySpec | None = None
    circuit_breaker: CircuitBreakerSpec | None = None
    error_policy: ErrorPolicySpec | None = Field(
        default=None, description="Retry, fallback and breaker per class of upstream failure."
    )
    cache: CacheSpec | None = Field(default=None, description="Exact-match answer cache.")
    batching: BatchingSpec | None = Field(default=None, description="Coalescing and batching.")
    queue: QueueSpec | None = Field(default=None, description="Priority admission queue.")
    latency: LatencySpec | None = Field(default=None, description="Latency prediction.")
    pricing: PricingSpec | None = Field(
        default=None, description="Model -> price per 1M tokens; overrides the bundled table."
    )
    pricing_file: FilePath | None = Field(
        default=None,
        description="Price table file (YAML/JSON: asOf, models) over the bundled table, under "
        "pricing; a mounted ConfigMap. Relative: to the policy's folder (standalone).",
    )

    @model_validator(mode="after")
    def _check(self) -> LlmPolicySpec:
        _check_provider_names(
            self.providers or [], self.operations, require_known=bool(self.providers)
        )
        return self


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = "default"
    namespace: str | None = None
    generation: int | None = None


class Resource(BaseModel):
    """What every sluice.dev resource shares: version, metadata, identity. Status is ignored."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)
    api_version: Literal["sluice.dev/v1alpha1"] = Field(alias="apiVersion")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @property
    def identity(self) -> str:
        return f"{self.metadata.namespace or 'default'}/{self.metadata.name}"


class LlmPolicy(Resource):
    kind: Literal["LlmPolicy"]
    spec: LlmPolicySpec


class LlmBudget(Resource):
    kind: Literal["LlmBudget"]
    spec: LlmBudgetSpec

    def compiled(self) -> CompiledBudget:
        rules = self.spec.model_dump(exclude={"selector"})
        return CompiledBudget(
            namespace=self.metadata.namespace or "default", name=self.metadata.name, **rules
        )


class SidecarConfig(Spec):
    """What one sidecar runs with: every selecting policy compiled into one resolved document."""

    providers: list[ProviderSpec] = Field(min_length=1)
    defaults: DefaultsSpec = Field(default_factory=DefaultsSpec)
    operations: dict[OperationName, OperationSpec] = Field(default_factory=dict)
    retry: RetrySpec = Field(default_factory=RetrySpec)
    circuit_breaker: CircuitBreakerSpec = Field(default_factory=CircuitBreakerSpec)
    error_policy: ErrorPolicySpec = Field(default_factory=ErrorPolicySpec)
    cache: CacheSpec = Field(default_factory=CacheSpec)
    batching: BatchingSpec = Field(default_factory=BatchingSpec)
    queue: QueueSpec = Field(default_factory=QueueSpec)
    latency: LatencySpec = Field(default_factory=LatencySpec)
    pricing: PricingSpec = Field(
        default_factory=dict, description="Model -> price per 1M tokens; over the bundled table."
    )
    pricing_file: FilePath | None = Field(
        default=None,
        description="Price table file (YAML/JSON: asOf, models) between pricing and the bundled "
        "table; re-read when it changes. Relative: to the working directory. null: none.",
    )
    workload: WorkloadRef = Field(
        default_factory=WorkloadRef, description="The workload served (cache key, usage reports)."
    )
    budgets: list[CompiledBudget] = Field(
        default_factory=list, description="LlmBudgets selecting this workload."
    )
    sources: list[str] = Field(default_factory=list, description="Policies compiled into this.")

    @model_validator(mode="after")
    def _check(self) -> SidecarConfig:
        _check_provider_names(self.providers, self.operations, require_known=True)
        return self

    def content_hash(self) -> str:
        """Version of this configuration: a hash of its canonical JSON (sources excluded)."""
        body = self.model_dump(mode="json", by_alias=True, exclude={"sources"})
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        return f"sha256:{digest[:16]}"


def _printable(value: str) -> bool:
    """No control characters (CR/LF would split an HTTP header or a log line)."""
    return value.isprintable()


def _check_provider_names(
    providers: list[ProviderSpec], operations: dict[str, OperationSpec], *, require_known: bool
) -> None:
    names = [provider.name for provider in providers]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"provider names must be unique: {', '.join(duplicates)}")
    if not require_known:
        return
    for operation, spec in operations.items():
        unknown = [name for name in spec.providers or [] if name not in names]
        if unknown:
            raise ValueError(
                f"operation {operation} names unknown provider(s) {', '.join(unknown)}"
                f" (known: {', '.join(names)})"
            )


def config_problems(error: ValidationError) -> list[str]:
    """Readable one-line problems from a pydantic error, e.g. 'retry.maxAttempts: ...'."""
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(root)"
        problems.append(f"{location}: {item['msg']}")
    return problems


class ConfigRejected(ValueError):
    """A configuration refused whole, with every problem found; the running one stays."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
