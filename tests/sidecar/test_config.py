"""Policy model validation and the compiler's precedence rules (unit)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sluice_sidecar.contract import (
    LlmPolicy,
    PolicyLoadError,
    compile_policies,
    config_problems,
    load_policy_documents,
)
from sluice_sidecar.contract.compiler import CompileError
from sluice_sidecar.contract.economics import LlmBudgetSpec
from sluice_sidecar.contract.loader import load_documents
from sluice_sidecar.contract.model import LlmBudget

PROVIDERS = [{"name": "openai", "type": "openai"}]


def make(name: str, priority: int = 0, **spec: object) -> LlmPolicy:
    return LlmPolicy.model_validate(
        {
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "LlmPolicy",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"priority": priority, **spec},
        }
    )


def problems_of(**spec: object) -> str:
    with pytest.raises(ValidationError) as caught:
        make("p", **spec)
    return "\n".join(config_problems(caught.value))


def test_builtin_presets_and_timeouts() -> None:
    config = compile_policies([make("p", providers=PROVIDERS)])
    ops = config.operations
    assert len([n for n, o in ops.items() if o.preset is not None]) == 13
    assert (ops["Scripting"].preset.temperature, ops["Scripting"].preset.max_tokens) == (0.8, 4000)
    assert ops["ScriptGeneration"].timeout_seconds == 120
    assert ops["ScriptRefinement"].timeout_seconds == 180
    assert ops["NarrationOptimization"].timeout_seconds == 30
    assert config.defaults.timeout_seconds == 60 and config.defaults.warning_threshold == 0.5


def test_policy_overrides_merge_per_field() -> None:
    config = compile_policies(
        [make("p", providers=PROVIDERS, operations={"Scripting": {"preset": {"maxTokens": 100}}})]
    )
    preset = config.operations["Scripting"].preset
    assert (preset.temperature, preset.max_tokens) == (0.8, 100)


def test_precedence_priority_then_name() -> None:
    low = make("a-low", providers=[{"name": "low", "type": "openai"}], retry={"maxAttempts": 2})
    high = make(
        "z-high",
        priority=5,
        providers=[{"name": "high", "type": "openai"}],
        operations={"Custom": {"timeoutSeconds": 5}},
    )
    config = compile_policies([low, high])
    assert [p.name for p in config.providers] == ["high"]  # sections from the winner
    assert config.retry.max_attempts == 2  # ... or from the first policy that sets them
    assert config.operations["Custom"].timeout_seconds == 5
    assert config.sources == ["ns/z-high", "ns/a-low"]


def test_compile_needs_providers() -> None:
    with pytest.raises(CompileError, match=r"no policy defines spec\.providers"):
        compile_policies([make("p")])


def test_hash_is_stable_and_content_based() -> None:
    a = compile_policies([make("a", providers=PROVIDERS)])
    b = compile_policies([make("b", providers=PROVIDERS)])
    c = compile_policies([make("a", providers=PROVIDERS, retry={"maxAttempts": 2})])
    assert a.content_hash() == b.content_hash() != c.content_hash()


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"retri": {}}, "retri: Extra inputs are not permitted"),
        ({"providers": [{"name": "x", "type": "azure"}]}, "providers.0.type"),
        ({"providers": [{"name": "x", "type": "openai-compatible"}]}, "baseUrl is required"),
        ({"providers": PROVIDERS * 2}, "provider names must be unique: openai"),
        ({"circuitBreaker": {"successThreshold": 0}}, "circuitBreaker.successThreshold"),
        ({"defaults": {"warningThreshold": 1.5}}, "defaults.warningThreshold"),
        (
            {"providers": PROVIDERS, "operations": {"X": {"providers": ["nope"]}}},
            "operation X names unknown provider(s) nope",
        ),
        ({"operations": {"bad name!": {}}}, "operations.bad name!"),
        (
            {"providers": [{"name": "x", "type": "openai", "apiKeyEnv": "A", "apiKeyFile": "/k"}]},
            "set at most one of",
        ),
    ],
)
def test_invalid_policies_are_explained(spec: dict, needle: str) -> None:
    assert needle in problems_of(**spec)


def _provider(**fields: object) -> dict:
    return {
        "providers": [{"name": "x", "type": "openai-compatible", "baseUrl": "http://h/v1"} | fields]
    }


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"authHeader": "api key"}, "authHeader must be an HTTP header name"),
        ({"authHeader": "x-key:"}, "authHeader must be an HTTP header name"),
        ({"authHeader": ""}, "authHeader must be an HTTP header name"),
        ({"headers": {"api-version": "1\r\nX-Evil: 1"}}, "control characters"),
        ({"headers": {"bad name": "v"}}, "headers: 'bad name' is not an HTTP header name"),
        ({"baseUrl": "http://h:99999/v1"}, "Port out of range"),
        ({"baseUrl": "http://h:0/v1"}, "port 0"),
        ({"baseUrl": "http://[::1/v1"}, "baseUrl"),
        ({"baseUrl": "ftp://h/v1"}, "baseUrl"),
        ({"baseUrl": "http:///v1"}, "baseUrl has no host"),
        ({"displayName": "a\nb"}, "control characters"),
    ],
)
def test_broken_provider_settings_are_refused_at_validation(fields: dict, needle: str) -> None:
    assert needle in problems_of(**_provider(**fields))


def test_valid_provider_settings_pass() -> None:
    spec = _provider(
        baseUrl="http://[::1]:8080/v1", authHeader="api-key", headers={"api-version": "2024-06-01"}
    )
    assert make("p", **spec).spec.providers[0].auth_header == "api-key"


def test_loader_reports_file_and_document() -> None:
    text = """
apiVersion: sluice.dev/v1alpha1
kind: LlmPolicy
metadata: {name: good}
spec: {providers: [{name: openai, type: openai}]}
---
apiVersion: sluice.dev/v1alpha1
kind: LlmBudget
metadata: {name: skipped}
spec: {}
---
apiVersion: sluice.dev/v1alpha1
kind: LlmPolicy
metadata: {name: broken}
spec: {retry: {maxAttempts: 99}}
"""
    with pytest.raises(PolicyLoadError) as caught:
        load_policy_documents(text, origin="team.yaml")
    assert caught.value.problems == [
        "team.yaml (broken): spec.retry.maxAttempts: Input should be less than or equal to 10"
    ]
    with pytest.raises(PolicyLoadError, match="invalid YAML"):
        load_policy_documents("a: [", origin="x.yaml")


def test_documents_of_odd_shapes_are_skipped_or_named_never_a_traceback() -> None:
    text = """
kind: [LlmPolicy]
---
kind: {a: b}
---
apiVersion: sluice.dev/v1alpha1
kind: LlmPolicy
metadata: [not, a, mapping]
spec: {retry: {maxAttempts: 99}}
"""
    with pytest.raises(PolicyLoadError) as caught:
        load_documents(text, origin="odd.yaml")
    assert caught.value.problems == [
        "odd.yaml (document 2): metadata: Input should be a valid dictionary or instance of"
        " ObjectMeta",
        "odd.yaml (document 2): spec.retry.maxAttempts: Input should be less than or equal to 10",
    ]


def test_llm_budget_documents_are_loaded_and_compiled() -> None:
    text = """
apiVersion: sluice.dev/v1alpha1
kind: LlmPolicy
metadata: {name: p, namespace: studio}
spec:
  providers: [{name: openai, type: openai}]
  pricing: {gpt-4o: {inputPer1M: 2.5, outputPer1M: 10}}
---
apiVersion: sluice.dev/v1alpha1
kind: LlmBudget
metadata: {name: monthly, namespace: studio}
spec:
  scope: {provider: openai}
  period: monthly
  limits: {costUSD: 500, tokens: 50000000, perRequestCostUSD: 0.5, perSessionCostUSD: 5}
  thresholds: {warning: 0.75, alert: 0.9}
  enforcement: hard
"""
    resources = load_documents(text)
    policies = [r for r in resources if isinstance(r, LlmPolicy)]
    budgets = [r for r in resources if isinstance(r, LlmBudget)]
    config = compile_policies(policies, budgets)
    [compiled] = config.budgets
    assert compiled.identity == "studio/monthly"
    assert str(compiled.limits.cost_usd) == "500"
    assert str(config.pricing["gpt-4o"].input_per_1m) == "2.5"
    again = type(config).model_validate(config.model_dump(mode="json", by_alias=True))
    assert again.content_hash() == config.content_hash()


def test_budget_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="warning < alert <= 1"):
        LlmBudgetSpec.model_validate({"thresholds": {"warning": 0.9, "alert": 0.8}})
