"""The chart's injection webhook: ``webhook.failurePolicy`` and the CEL match conditions.

Rendered by the built helm (the API server accepting them is ``test_chart.py``'s dry run)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.test_chart import CHART, run_helm

pytestmark = pytest.mark.e2e


def webhooks(helm: Path, *flags: str) -> list[dict[str, Any]]:
    rendered = run_helm(
        helm, "template", "sluice", str(CHART), "-n", "sluice-system",
        "--show-only", "templates/webhook.yaml", *flags,
    )  # fmt: skip
    (configuration,) = [d for d in yaml.safe_load_all(rendered) if d]
    return configuration["webhooks"]


def test_failure_policy_is_a_value_ignore_by_default(helm: Path) -> None:
    assert {h["failurePolicy"] for h in webhooks(helm)} == {"Ignore"}
    assert {h["failurePolicy"] for h in webhooks(helm, "--set", "webhook.failurePolicy=Fail")} == {
        "Fail"
    }
    wrong = subprocess.run(
        [str(helm), "template", "sluice", str(CHART), "--set", "webhook.failurePolicy=Sometimes"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert wrong.returncode != 0 and "failurePolicy" in wrong.stderr


def test_host_network_pods_never_reach_the_webhook_and_annotations_do(helm: Path) -> None:
    hooks = {h["name"]: h for h in webhooks(helm, "--kube-version", "1.35.0")}
    assert sorted(hooks) == [
        "pods.annotation.inject.sluice.dev",
        "pods.inject.sluice.dev",
        "pods.namespace.inject.sluice.dev",
    ]
    for hook in hooks.values():
        conditions = {c["name"]: c["expression"] for c in hook["matchConditions"]}
        assert "object.spec.hostNetwork" in conditions["pod-network"]
    annotated = hooks["pods.annotation.inject.sluice.dev"]["matchConditions"][1]["expression"]
    assert "object.metadata.annotations['sluice.dev/inject'] == 'true'" in annotated
    # Before 1.28 there are no match conditions: the label hooks only (the webhook itself
    # still skips hostNetwork pods).
    old = webhooks(helm, "--kube-version", "1.27.0")
    assert len(old) == 2 and not any("matchConditions" in h for h in old)
