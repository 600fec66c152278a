"""A small in-memory stand-in for the Kubernetes reads the operator makes (``kube.Kube``).

Only reads: the planners under test are pure, and the tests assert on the plans they return.
Bodies are the plain dictionaries the API server would send; builders below make them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sluice_operator.injection import INJECTED_LABEL, WORKLOAD_LABEL
from sluice_operator.selection import selector_matches

Body = dict[str, Any]
NAMESPACE = "team-a"


@dataclass
class FakeKube:
    namespace_labels_: dict[str, str] | None = field(default_factory=dict)
    policies_: list[Body] = field(default_factory=list)
    budgets_: list[Body] = field(default_factory=list)
    deployments_: list[Body] = field(default_factory=list)
    pods_: list[Body] = field(default_factory=list)
    config_maps: dict[str, Body] = field(default_factory=dict)

    async def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        return self.namespace_labels_

    async def policies(self, namespace: str) -> list[Body]:
        return self.policies_

    async def budgets(self, namespace: str) -> list[Body]:
        return self.budgets_

    async def deployments(self, namespace: str) -> list[Body]:
        return self.deployments_

    async def pods(self, namespace: str, selector: str) -> list[Body]:
        wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
        return [p for p in self.pods_ if selector_matches({"matchLabels": wanted}, _labels(p))]

    async def config_map(self, namespace: str, name: str) -> Body | None:
        return self.config_maps.get(name)


def _labels(body: Body) -> dict[str, str]:
    return body["metadata"].get("labels") or {}


def policy(name: str, spec: Body, *, generation: int = 1, status: Body | None = None) -> Body:
    body: Body = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "LlmPolicy",
        "metadata": {"name": name, "namespace": NAMESPACE, "generation": generation},
        "spec": spec,
    }
    if status is not None:
        body["status"] = status
    return body


def budget(name: str, spec: Body, *, status: Body | None = None) -> Body:
    body: Body = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "LlmBudget",
        "metadata": {"name": name, "namespace": NAMESPACE, "generation": 1},
        "spec": spec,
    }
    if status is not None:
        body["status"] = status
    return body


def deployment(name: str, labels: dict[str, str], **template_annotations: str) -> Body:
    return {
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": f"uid-{name}", "annotations": {}},
        "spec": {
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {"sluice.dev/inject": "true", **template_annotations},
                }
            }
        },
    }


def pod(
    name: str,
    workload: str,
    *,
    uid: str | None = None,
    ready: bool = True,
    running: str | None = None,
    deleting: bool = False,
) -> Body:
    metadata: Body = {
        "name": name,
        "namespace": NAMESPACE,
        "uid": uid or f"uid-{name}",
        "labels": {INJECTED_LABEL: "true", WORKLOAD_LABEL: workload},
        "annotations": {"sluice.dev/config-version": running} if running else {},
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {
        "metadata": metadata,
        "status": {"podIP": "127.0.0.9", "conditions": conditions},
    }


OPENAI = {"name": "openai", "type": "openai"}
ANTHROPIC = {"name": "anthropic", "type": "anthropic"}
