"""The generated CRDs on the real API server: schema, defaults and CEL rules reject bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from e2e.harness.controlplane import ControlPlane, KubectlError

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed_crds(control_plane: ControlPlane) -> ControlPlane:
    control_plane.kubectl("apply", "-f", str(ROOT / "crds"))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "crd/llmpolicies.sluice.dev", "--timeout=30s"
    )
    return control_plane


def policy(name: str, spec: dict) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "LlmPolicy",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def apply_error(cp: ControlPlane, namespace: str, text: str) -> str:
    with pytest.raises(KubectlError) as caught:
        cp.kubectl("apply", "-n", namespace, "-f", "-", input=text)
    return caught.value.stderr


def is_manifest(path: Path) -> bool:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return all(isinstance(d, dict) and "apiVersion" in d and "kind" in d for d in documents)


def test_examples_are_accepted_with_defaults(installed_crds: ControlPlane, namespace: str) -> None:
    for example in sorted((ROOT / "examples").glob("*/*.yaml")):
        if not is_manifest(example):  # a price table beside its policy, read by the sidecar
            continue
        installed_crds.kubectl("apply", "-n", namespace, "-f", str(example))
    stored = installed_crds.request(
        "GET", f"/apis/sluice.dev/v1alpha1/namespaces/{namespace}/llmpolicies/studio"
    )
    assert stored["spec"]["circuitBreaker"]["maxConcurrent"] == 100
    assert stored["spec"]["operations"]["ThumbnailCaption"]["preset"]["force"] is True
    # Defaults from the models were applied by the API server.
    basic = installed_crds.request(
        "GET", f"/apis/sluice.dev/v1alpha1/namespaces/{namespace}/llmpolicies/basic"
    )
    assert basic["spec"]["priority"] == 0


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"retry": {"strategy": "sometimes"}}, "spec.retry.strategy"),
        ({"retry": {"maxAttempts": 0}}, "spec.retry.maxAttempts"),
        ({"retry": {"baseDelayMs": 5000, "maxDelayMs": 10}}, "maxDelayMs must be >= baseDelayMs"),
        ({"circuitBreaker": {"successThreshold": 0}}, "spec.circuitBreaker.successThreshold"),
        (
            {"circuitBreaker": {"openSeconds": 100, "maxOpenSeconds": 10}},
            "maxOpenSeconds must be >= openSeconds",
        ),
        ({"providers": [{"name": "a", "type": "openai-compatible"}]}, "baseUrl is required"),
        (
            {"providers": [{"name": "a", "type": "openai"}, {"name": "a", "type": "anthropic"}]},
            "provider names must be unique",
        ),
        (
            {
                "providers": [{"name": "a", "type": "openai"}],
                "operations": {"Scenes": {"providers": ["missing"]}},
            },
            "every provider named in operations",
        ),
        ({"operations": {"bad name": {}}}, "keys must match"),
        ({"defaults": {"warningThreshold": 1}}, "spec.defaults.warningThreshold"),
    ],
)
def test_invalid_policies_are_rejected_by_the_api_server(
    installed_crds: ControlPlane, namespace: str, spec: dict, needle: str
) -> None:
    assert needle in apply_error(installed_crds, namespace, policy("bad", spec))


def test_short_names_and_category(installed_crds: ControlPlane, namespace: str) -> None:
    installed_crds.kubectl(
        "apply", "-n", namespace, "-f", str(ROOT / "examples/01-basic/policy.yaml")
    )
    by_short = installed_crds.kubectl("get", "llmpol", "-n", namespace, "-o", "name").stdout
    by_category = installed_crds.kubectl("get", "sluice", "-n", namespace, "-o", "name").stdout
    assert "llmpolicy.sluice.dev/basic" in by_short and "llmpolicy.sluice.dev/basic" in by_category
    table = installed_crds.kubectl("get", "llmpolicies", "-n", namespace).stdout
    assert table.split("\n")[0].split() == ["NAME", "READY", "PROVIDERS", "SIDECARS", "AGE"]


def budget(spec: dict) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "LlmBudget",
            "metadata": {"name": "b"},
            "spec": spec,
        }
    )


def test_budget_schema_and_cel(installed_crds: ControlPlane, namespace: str) -> None:
    installed_crds.kubectl(
        "wait", "--for=condition=Established", "crd/llmbudgets.sluice.dev", "--timeout=30s"
    )
    ok = budget({"period": "daily", "limits": {"costUSD": 5, "tokens": 100000}})
    installed_crds.kubectl("apply", "-n", namespace, "-f", "-", input=ok)
    stored = installed_crds.request(
        "GET", f"/apis/sluice.dev/v1alpha1/namespaces/{namespace}/llmbudgets/b"
    )
    assert stored["spec"]["enforcement"] == "hard"  # defaulted by the API server
    assert stored["spec"]["thresholds"] == {"warning": 0.75, "alert": 0.9}
    for spec, needle in [
        ({"thresholds": {"warning": 0.9, "alert": 0.8}}, "warning < alert <= 1"),
        ({"period": "hourly"}, "spec.period"),
        ({"limits": {"costUSD": -1}}, "spec.limits.costUSD"),
        ({"enforcement": "maybe"}, "spec.enforcement"),
    ]:
        assert needle in apply_error(installed_crds, namespace, budget(spec))
    by_category = installed_crds.kubectl("get", "sluice", "-n", namespace, "-o", "name").stdout
    assert "llmbudget.sluice.dev/b" in by_category
    header = installed_crds.kubectl("get", "llmbudgets", "-n", namespace).stdout.split("\n")[0]
    assert header.split() == ["NAME", "PERIOD", "SPENT", "LIMIT", "UTILIZATION", "STATE", "AGE"]
