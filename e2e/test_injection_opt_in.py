"""Every opt-in path ends with an injected, configured, Ready pod, on the real control plane.

The paths: the ``sluice.dev/inject`` annotation, the same key as a pod-template label, and
the namespace label ``sluice.dev/inject=enabled``; the workloads: Deployments, StatefulSets,
Jobs and bare Pods. "Ready" is the sidecar's own ``/readyz`` (it answers 200 only with a
configuration loaded: a sidecar that never gets one keeps its Pod out of Service endpoints
for good in a cluster), with the version the operator stored for the pod's workload.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from e2e.harness.controlplane import ControlPlane
from e2e.harness.kubelet import PodSlot
from e2e.harness.processes import wait_until
from e2e.sluice import SluiceDeployment, sidecar_admin, sidecar_config, sidecar_launch
from e2e.workloads import admin_token, condition, configmap_version, policy, policy_status

pytestmark = pytest.mark.e2e
INJECT = "sluice.dev/inject"


def pod_template(app: str, gesture: str | None, restart: str = "Always") -> dict[str, Any]:
    """``gesture``: "label" or "annotation" (of ``sluice.dev/inject=true``), or None."""
    metadata: dict[str, Any] = {"labels": {"app": app}}
    if gesture == "label":
        metadata["labels"][INJECT] = "true"
    elif gesture == "annotation":
        metadata["annotations"] = {INJECT: "true"}
    return {
        "metadata": metadata,
        "spec": {
            "restartPolicy": restart,
            "containers": [{"name": "app", "image": "registry.local/app:1"}],
        },
    }


def manifest(kind: str, name: str, gesture: str | None) -> dict[str, Any]:
    """One workload of ``kind`` opted in by ``gesture`` ("deployment-annotation": on the
    Deployment itself, which the operator copies into its pod template)."""
    template = pod_template(name, None if gesture == "deployment-annotation" else gesture)
    selector = {"matchLabels": {"app": name}}
    if kind == "Deployment":
        annotations = {INJECT: "true"} if gesture == "deployment-annotation" else {}
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"replicas": 1, "selector": selector, "template": template},
        }
    if kind == "StatefulSet":
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "serviceName": name,
                "selector": selector,
                "template": template,
            },
        }
    if kind == "Job":
        template = pod_template(name, gesture, restart="Never")
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": template},
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        **template,
        "metadata": {"name": name, **template["metadata"]},
    }


@pytest.fixture
def enabled_namespace(control_plane: ControlPlane, namespace: str) -> Iterator[str]:
    """A second namespace, labelled ``sluice.dev/inject=enabled``."""
    name = f"{namespace[:50]}-ns"
    control_plane.api.create(
        "/api/v1/namespaces", {"metadata": {"name": name, "labels": {INJECT: "enabled"}}}
    )
    wait_until(
        lambda: control_plane.api.exists(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        30,
        what=f"ServiceAccount {name}/default",
    )
    yield name
    control_plane.api.delete(f"/api/v1/namespaces/{name}")


# (namespace key, kind, workload name, gesture): every path a user can take.
PATHS = [
    ("plain", "Deployment", "dep-annotated", "deployment-annotation"),
    ("plain", "Deployment", "dep-labelled", "label"),
    ("plain", "StatefulSet", "sts-labelled", "label"),
    ("plain", "StatefulSet", "sts-annotated", "annotation"),
    ("plain", "Job", "job-labelled", "label"),
    ("plain", "Job", "job-annotated", "annotation"),
    ("plain", "Pod", "pod-labelled", "label"),
    ("plain", "Pod", "pod-annotated", "annotation"),
    ("enabled", "Deployment", "dep-ns", None),
    ("enabled", "StatefulSet", "sts-ns", None),
    ("enabled", "Job", "job-ns", None),
    ("enabled", "Pod", "pod-ns", None),
]


def test_every_opt_in_path_ends_with_a_configured_ready_sidecar(
    sluice: SluiceDeployment,
    control_plane: ControlPlane,
    namespace: str,
    enabled_namespace: str,
    fake_kubelet,
    tmp_path,
) -> None:
    namespaces = {"plain": namespace, "enabled": enabled_namespace}
    kubelets = {
        key: fake_kubelet(ns, "sluice.dev/injected=true", sidecar_launch(control_plane, tmp_path))
        for key, ns in namespaces.items()
    }
    # A policy selecting the StatefulSet: its pods get that policy, the others the defaults.
    control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=policy("sts", "sts-labelled", retry={"maxAttempts": 2}),
    )  # fmt: skip
    for key, kind, name, gesture in PATHS:
        body = yaml.safe_dump(manifest(kind, name, gesture))
        control_plane.kubectl("apply", "-n", namespaces[key], "-f", "-", input=body)

    def workload_of(slot: PodSlot) -> str:
        return slot.pod["metadata"]["labels"]["sluice.dev/workload"]

    def not_ready() -> list[str]:
        """Each path whose pod is not running with its workload's configuration, and why."""
        missing = []
        for key, _, name, _ in PATHS:
            ns = namespaces[key]
            slots = [s for s in kubelets[key].slots().values() if workload_of(s) == name]
            if not slots:
                missing.append(f"{ns}/{name}: no injected pod running")
                continue
            try:
                ready = sidecar_admin(slots[0], "", "/readyz")  # 503 until configured
                wanted = configmap_version(control_plane, ns, name)
            except Exception as error:  # not ready (503) or no ConfigMap yet
                missing.append(f"{ns}/{name}: {error}")
                continue
            if ready.get("version") != wanted:
                missing.append(f"{ns}/{name}: runs {ready.get('version')}, wanted {wanted}")
        return missing

    try:
        wait_until(lambda: not not_ready(), 90, what="every opt-in path to end Ready")
    except TimeoutError as error:
        raise AssertionError(f"{error}: {not_ready()}") from None

    # The policy reached the StatefulSet's pod and counts it.
    (sts,) = [s for s in kubelets["plain"].slots().values() if workload_of(s) == "sts-labelled"]
    config = sidecar_config(sts, admin_token(control_plane, namespace))["config"]
    assert config["retry"]["maxAttempts"] == 2
    status = wait_until(
        lambda: (
            (s := policy_status(control_plane, namespace, "sts"))
            and condition(s, "Ready").get("status") == "True"
            and s
        ),
        30,
        what="the StatefulSet's policy to report Ready",
    )
    assert status["workloads"] == [f"{namespace}/sts-labelled"]
    assert status["sidecars"]["summary"] == "1/1"
