"""LlmBudget feedback on the real control plane: an invalid budget's conditions, its Event and
the Message column of ``kubectl get -o wide``, and the conditions turning True once fixed."""

from __future__ import annotations

import pytest
import yaml

from e2e.harness.controlplane import ControlPlane
from e2e.harness.processes import wait_until
from e2e.sluice import SluiceDeployment
from e2e.workloads import condition

pytestmark = pytest.mark.e2e


def budget(name: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "LlmBudget",
            "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": "studio"}}, "limits": {"costUSD": 1}},
        }
    )


def status(cp: ControlPlane, namespace: str, name: str) -> dict:
    path = f"/apis/sluice.dev/v1alpha1/namespaces/{namespace}/llmbudgets/{name}"
    return cp.request("GET", path).get("status") or {}


def test_an_invalid_budget_is_reported_and_a_valid_one_ready(
    sluice: SluiceDeployment, control_plane: ControlPlane, namespace: str
) -> None:
    # A name the API server takes (a DNS subdomain) but the sidecars' configuration refuses.
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=budget("daily.v2"))
    reported = wait_until(
        lambda: (s := status(control_plane, namespace, "daily.v2")).get("conditions") and s,
        30,
        what="the invalid budget's conditions",
    )
    valid = condition(reported, "Valid")
    assert (valid["status"], valid["reason"]) == ("False", "Invalid")
    assert "name" in valid["message"]
    assert condition(reported, "Ready")["status"] == "False"
    assert reported["observedGeneration"] == 1
    assert "spentUSD" not in reported  # never collected, never enforced

    def warnings() -> list[dict]:
        events = control_plane.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
        return [
            e
            for e in events
            if e["reason"] == "InvalidBudget" and e["involvedObject"]["name"] == "daily.v2"
        ]

    (event,) = wait_until(warnings, 30, what="the InvalidBudget Event")
    assert event["type"] == "Warning"
    wide = control_plane.kubectl("get", "llmbudgets", "-n", namespace, "-o", "wide").stdout
    header, row = wide.splitlines()[:2]
    assert header.split()[-1] == "MESSAGE" and "name" in row
    assert "MESSAGE" not in control_plane.kubectl("get", "llmbudgets", "-n", namespace).stdout

    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=budget("daily"))
    ready = wait_until(
        lambda: (
            (s := status(control_plane, namespace, "daily")).get("conditions")
            and condition(s, "Ready")["status"] == "True"
            and s
        ),
        30,
        what="the valid budget to be Ready",
    )
    assert condition(ready, "Valid")["reason"] == "Validated"
    assert condition(ready, "Ready")["reason"] == "Enforced"
    assert len(warnings()) == 1  # one Event for one transition, not one per reconcile
