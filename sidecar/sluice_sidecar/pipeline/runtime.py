"""The request path's view of a SidecarConfig: resolved once per configuration, then read-only.

``build_runtime`` turns the validated model into plain objects with everything precomputed
(auth headers with the key read from its file or variable, model matchers, timeouts, preset
fields), so a request does dictionary look-ups and nothing more. A configuration swap replaces
the whole ``Runtime``; a request keeps the one it started with.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sluice_sidecar.contract.budget_maths import BudgetRule, build_rules
from sluice_sidecar.contract.builtins import DEFAULT_OPERATION
from sluice_sidecar.contract.economics import AdaptiveTimeoutSpec
from sluice_sidecar.contract.model import (
    ConfigRejected,
    OperationSpec,
    ProviderSpec,
    RetrySpec,
    SidecarConfig,
)
from sluice_sidecar.economics.price_file import PriceFileError, PriceFileWatch, prices_of
from sluice_sidecar.economics.pricing import PriceTable
from sluice_sidecar.economics.vendors import with_vendor
from sluice_sidecar.errors import ApiFamily, MalformedRequest, NoProviderForModel
from sluice_sidecar.resilience.error_classes import ErrorPolicy
from sluice_sidecar.resilience.error_classes import resolve as resolve_error_policy

DISPLAY_NAMES = {"openai": "OpenAI", "anthropic": "Anthropic", "openrouter": "OpenRouter"}
MAX_CANDIDATE_CACHE = 1024


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    type: str
    family: ApiFamily
    base_url: str
    display_name: str
    auth_headers: Mapping[str, str]  # empty: the caller's own key passes through
    extra_headers: Mapping[str, str]
    model_pattern: re.Pattern[str] | None  # None: serves every model
    model_map: Mapping[str, str]
    # "Secret S key K" when its apiKeySecretRef is not mounted: every call to it is refused
    # (KeyMissing) until the file appears and the configuration is built again.
    missing_key: str | None = None

    def serves(self, model: str | None) -> bool:
        """Whether this provider serves ``model``; None (a model listing) is served by all."""
        if model is None or self.model_pattern is None:
            return True
        return self.model_pattern.match(model) is not None

    def upstream_model(self, model: str) -> str:
        mapped = self.model_map.get(model)
        if mapped is not None:
            return mapped
        # OpenRouter names models vendor/model: a bare gpt-4o is openai/gpt-4o there.
        return with_vendor(model) if self.type == "openrouter" else model

    @property
    def max_tokens_field(self) -> str:
        # OpenAI's own API deprecated max_tokens for chat; compatible servers still expect it.
        return "max_completion_tokens" if self.type == "openai" else "max_tokens"


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    timeout_s: float
    warn_after_s: float
    max_timeout_s: float  # the longest X-LLM-Timeout accepted (>= timeout_s)
    warning_threshold: float
    temperature: float | None
    max_tokens: int | None
    top_p: float | None
    force_preset: bool
    retry: RetrySpec
    provider_names: tuple[str, ...] | None
    cache_mode: str = "off"  # off, always (operation enabled it), deterministic (temperature)
    cache_ttl_s: int = 0
    cache_stale_s: int = 0  # served past its TTL for this long when every provider fails
    adaptive_timeout: AdaptiveTimeoutSpec | None = None  # None: attempts run to the deadline

    @property
    def has_preset(self) -> bool:
        return any(v is not None for v in (self.temperature, self.max_tokens, self.top_p))


@dataclass(slots=True)
class Runtime:
    config: SidecarConfig
    version: str
    providers: tuple[Provider, ...]
    operations: dict[str, Operation]
    fallback_operation: Operation | None  # used for unknown operations when allowed
    prices: PriceTable
    budget_rules: tuple[BudgetRule, ...]
    error_policy: ErrorPolicy  # retry, fallback and breaker per class of upstream failure
    _candidates: dict[tuple[ApiFamily, str | None, str], tuple[Provider, ...]] = field(
        default_factory=dict
    )

    @property
    def missing_keys(self) -> tuple[str, ...]:
        """Providers whose key is not mounted (a swap is due when this changes)."""
        return tuple(p.name for p in self.providers if p.missing_key is not None)

    def operation(self, name: str | None) -> Operation:
        if name is None:
            return self.operations[DEFAULT_OPERATION]
        operation = self.operations.get(name)
        if operation is not None:
            return operation
        if self.fallback_operation is not None:
            return self.fallback_operation
        known = ", ".join(sorted(self.operations))
        raise MalformedRequest(
            f"unknown operation {name!r} in X-LLM-Operation; known operations: {known}",
            code="unknown_operation",
        )

    def candidates(
        self, family: ApiFamily, model: str | None, operation: Operation
    ) -> tuple[Provider, ...]:
        """Providers that can serve this call, in preference order (primary first)."""
        key = (family, model, operation.name)
        found = self._candidates.get(key)
        if found is None:
            pool = self.providers
            if operation.provider_names is not None:
                by_name = {p.name: p for p in pool}
                pool = tuple(by_name[n] for n in operation.provider_names)
            found = tuple(p for p in pool if p.family == family and p.serves(model))
            if len(self._candidates) < MAX_CANDIDATE_CACHE:
                self._candidates[key] = found
        if not found:
            raise NoProviderForModel(
                f"no configured {family} provider serves model {model!r}"
                f" for operation {operation.name}"
            )
        return found


def build_runtime(
    config: SidecarConfig,
    *,
    secrets_dir: Path,
    environ: Mapping[str, str],
) -> Runtime:
    problems: list[str] = []
    providers = []
    for spec in config.providers:
        try:
            providers.append(_build_provider(spec, secrets_dir, environ))
        except ConfigRejected as error:
            problems.extend(error.problems)
    if problems:
        raise ConfigRejected(problems)
    operations = {
        name: _build_operation(name, spec, config) for name, spec in config.operations.items()
    }
    if "Completion" not in operations:
        operations[DEFAULT_OPERATION] = _build_operation(DEFAULT_OPERATION, OperationSpec(), config)
    fallback = None
    if config.defaults.unknown_operation == "allow":
        fallback = _build_operation("other", OperationSpec(), config)
    try:
        watch = PriceFileWatch(config.pricing_file) if config.pricing_file else None
    except PriceFileError as error:
        raise ConfigRejected(error.problems) from error
    prices = PriceTable(prices_of(config.pricing), watch)
    return Runtime(
        config=config,
        version=config.content_hash(),
        providers=tuple(providers),
        operations=operations,
        fallback_operation=fallback,
        prices=prices,
        budget_rules=build_rules(config.budgets),
        error_policy=resolve_error_policy(config.error_policy),
    )


# Provider keys are under a few hundred bytes; a file far larger is not a key (and is read whole
# on every configuration swap).
MAX_KEY_FILE_BYTES = 16 * 1024


def _read_key(spec: ProviderSpec, secrets_dir: Path, environ: Mapping[str, str]) -> str | None:
    where: str
    if spec.api_key_env is not None:
        key = environ.get(spec.api_key_env)
        if not key:
            raise ConfigRejected(
                [f"provider {spec.name}: environment variable {spec.api_key_env} is not set"]
            )
        return _checked_key(key.strip(), spec.name, f"variable {spec.api_key_env}")
    if spec.api_key_secret_ref is not None:
        ref = spec.api_key_secret_ref
        path = secrets_dir / ref.name / ref.key
        where = f"Secret {ref.name} key {ref.key} (expected at {path})"
        if not path.exists() or (path.is_file() and path.stat().st_size == 0):
            # The kubelet mounts the Secrets as optional: one not created yet is not a
            # wrong configuration, it refuses that provider's calls until it is there.
            raise KeyNotMounted(f"Secret {ref.name} key {ref.key}")
    elif spec.api_key_file is not None:
        path = secrets_dir / spec.api_key_file  # an absolute path stays as it is
        where = f"apiKeyFile {spec.api_key_file}"
    else:
        return None
    try:
        resolved = path.resolve(strict=True)
        if not resolved.is_relative_to(secrets_dir.resolve()):
            # Any other file (the admin token, a service account token) would go upstream.
            raise ConfigRejected(
                [f"provider {spec.name}: {where} is outside the secrets directory {secrets_dir}"]
            )
        if not resolved.is_file():
            # A FIFO or a device would block the swap (and the event loop) waiting for data.
            raise ConfigRejected([f"provider {spec.name}: {where} is not a regular file"])
        with resolved.open("rb") as handle:
            raw = handle.read(MAX_KEY_FILE_BYTES + 1)
        if len(raw) > MAX_KEY_FILE_BYTES:
            raise ConfigRejected(
                [f"provider {spec.name}: {where} is larger than {MAX_KEY_FILE_BYTES} bytes"]
            )
        key = raw.decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise ConfigRejected([f"provider {spec.name}: cannot read {where}: {reason}"]) from error
    return _checked_key(key, spec.name, where)


def _checked_key(key: str, provider: str, where: str) -> str:
    if not key:
        raise ConfigRejected([f"provider {provider}: {where} is empty"])
    if not key.isprintable():
        # A line break would split the auth header: aiohttp refuses to send it at every call.
        raise ConfigRejected([f"provider {provider}: {where} has control characters"])
    return key


class KeyNotMounted(Exception):
    """An apiKeySecretRef whose file is absent or empty: the Secret or key does not exist."""


def _build_provider(spec: ProviderSpec, secrets_dir: Path, environ: Mapping[str, str]) -> Provider:
    missing = None
    try:
        key = _read_key(spec, secrets_dir, environ)
    except KeyNotMounted as error:
        key, missing = None, str(error)
    auth: dict[str, str] = {}
    if key is not None:
        header = spec.auth_header or ("x-api-key" if spec.type == "anthropic" else "authorization")
        auth[header.lower()] = f"Bearer {key}" if header.lower() == "authorization" else key
    pattern = None
    if spec.models != ["*"]:
        pattern = re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in spec.models))
    return Provider(
        name=spec.name,
        type=spec.type,
        family=spec.api_family,
        base_url=spec.effective_base_url,
        display_name=spec.display_name or DISPLAY_NAMES.get(spec.type, spec.name),
        auth_headers=auth,
        extra_headers={k.lower(): v for k, v in spec.headers.items()},
        model_pattern=pattern,
        model_map=dict(spec.model_map),
        missing_key=missing,
    )


def _build_operation(name: str, spec: OperationSpec, config: SidecarConfig) -> Operation:
    timeout = spec.timeout_seconds or config.defaults.timeout_seconds
    threshold = spec.warning_threshold or config.defaults.warning_threshold
    longest = spec.max_timeout_seconds or config.defaults.max_timeout_seconds or timeout
    adaptive = spec.adaptive_timeout or config.latency.adaptive_timeout
    preset = spec.preset
    cache = config.cache
    switch = spec.cache.enabled if spec.cache is not None else None
    mode = "off"
    if cache.enabled and switch is not False:
        mode = "always" if switch else "deterministic"
    ttl = spec.cache.ttl_seconds if spec.cache and spec.cache.ttl_seconds else cache.ttl_seconds
    return Operation(
        name=name,
        timeout_s=timeout,
        warn_after_s=timeout * threshold,
        max_timeout_s=max(longest, timeout),
        warning_threshold=threshold,
        temperature=preset.temperature if preset else None,
        max_tokens=preset.max_tokens if preset else None,
        top_p=preset.top_p if preset else None,
        force_preset=preset.force if preset else False,
        retry=spec.retry or config.retry,
        provider_names=tuple(spec.providers) if spec.providers is not None else None,
        cache_mode=mode,
        cache_ttl_s=ttl,
        cache_stale_s=(spec.cache.stale_if_error_seconds or 0) if spec.cache else 0,
        adaptive_timeout=adaptive if adaptive.enabled else None,
    )


def apply_preset(body: dict[str, Any], operation: Operation, max_tokens_field: str) -> bool:
    """Fill the operation's preset into a request body in place; True when it changed."""
    changed = False
    force = operation.force_preset
    if operation.temperature is not None and (force or "temperature" not in body):
        body["temperature"] = operation.temperature
        changed = True
    if operation.top_p is not None and (force or "top_p" not in body):
        body["top_p"] = operation.top_p
        changed = True
    if operation.max_tokens is not None:
        has_limit = "max_tokens" in body or "max_completion_tokens" in body
        if force or not has_limit:
            if force:
                body.pop("max_tokens", None)
                body.pop("max_completion_tokens", None)
            body[max_tokens_field] = operation.max_tokens
            changed = True
    return changed
