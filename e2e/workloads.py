"""Workloads and policies as the e2e tests write and read them: manifests (an annotated
Deployment, an LlmPolicy) and what tests look at (the admin token, ConfigMap versions and owners,
sidecars' configuration versions, policy status and conditions).

Shared by ``test_operator.py``, ``test_budgets.py`` and ``test_helm_install.py``.
"""

from __future__ import annotations

import base64

import yaml

from e2e.harness.controlplane import ControlPlane
from e2e.harness.kubelet import FakeKubelet
from e2e.harness.processes import wait_until
from e2e.sluice import sidecar_config

POLICIES = "/apis/sluice.dev/v1alpha1/namespaces/{ns}/llmpolicies"


def deployment(name: str, replicas: int, annotate: bool = True) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "annotations": {"sluice.dev/inject": "true"} if annotate else {},
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": "registry.local/app:1"}]},
                },
            },
        }
    )


def policy(name: str, app: str, **spec: object) -> str:
    spec.setdefault("providers", [{"name": "openai", "type": "openai"}])
    return yaml.safe_dump(
        {
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "LlmPolicy",
            "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": app}}, **spec},
        }
    )


def admin_token(cp: ControlPlane, namespace: str) -> str:
    secret = cp.request("GET", f"/api/v1/namespaces/{namespace}/secrets/sluice-sidecar-admin")
    return base64.b64decode(secret["data"]["token"]).decode()


def configmap_path(namespace: str, workload: str) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps/sluice-config-{workload}"


def configmap_version(cp: ControlPlane, namespace: str, workload: str) -> str:
    cm = cp.request("GET", configmap_path(namespace, workload))
    return cm["metadata"]["annotations"]["sluice.dev/config-version"]


def configmap_owners(cp: ControlPlane, namespace: str, workload: str) -> list[tuple[str, str, str]]:
    """(kind, name, uid) of each owner of the workload's ConfigMap."""
    cm = cp.request("GET", configmap_path(namespace, workload))
    return [(o["kind"], o["name"], o["uid"]) for o in cm["metadata"].get("ownerReferences") or []]


def running_sidecars(kubelet: FakeKubelet, count: int) -> list:
    return wait_until(
        lambda: (s := list(kubelet.slots().values())) and len(s) == count and s,
        60,
        what=f"{count} injected pods running",
    )


def versions(kubelet: FakeKubelet, token: str) -> set[str]:
    return {sidecar_config(slot, token)["version"] for slot in kubelet.slots().values()}


def policy_status(cp: ControlPlane, namespace: str, name: str) -> dict:
    return cp.request("GET", f"{POLICIES.format(ns=namespace)}/{name}").get("status") or {}


def condition(status: dict, kind: str) -> dict:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})
