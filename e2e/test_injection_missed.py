"""A missed injection is reported, on the real control plane.

With ``failurePolicy: Ignore`` and the operator down, the API server admits an opted-in Pod
without the sidecar. Once the operator is back it must say so where a platform team looks:
the condition ``Injected=False`` (and ``Ready=False``) on the policy that selects the Pod, a
``SidecarMissing`` Warning on the Pod and on the policy, and the gauge
``sluice_operator_sidecars{state="missing"}``; rolling the workload clears all of it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import yaml

from e2e.harness.controlplane import ControlPlane
from e2e.harness.processes import wait_until
from e2e.operator_replicas import start_replica
from e2e.sluice import WEBHOOK_CONFIGURATION, SluiceDeployment, sidecar_launch
from e2e.workloads import condition, deployment, policy, policy_status

pytestmark = pytest.mark.e2e


WEBHOOK = (
    f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{WEBHOOK_CONFIGURATION}"
)


@contextmanager
def webhook_unreachable(cp: ControlPlane, sluice: SluiceDeployment) -> Iterator[None]:
    """The webhook configuration pointed at a closed port while the operator keeps running."""
    saved = cp.request("GET", WEBHOOK)
    broken = copy.deepcopy(saved)
    for hook in broken["webhooks"]:
        hook["clientConfig"]["url"] = "https://127.0.0.1:1/inject"
    cp.request("PUT", WEBHOOK, broken)
    try:
        wait_until(lambda: not sluice._webhook_active(), 30, what="admissions to skip the webhook")
        yield
    finally:
        current = cp.request("GET", WEBHOOK)
        for hook, kept in zip(current["webhooks"], saved["webhooks"], strict=True):
            hook["clientConfig"] = kept["clientConfig"]
        cp.request("PUT", WEBHOOK, current)
        wait_until(sluice._webhook_active, 30, what="the injection webhook to answer again")


def bare_pod_missed_while_the_operator_runs(
    sluice: SluiceDeployment, cp: ControlPlane, namespace: str, labels: dict[str, str]
) -> None:
    """A bare Pod ``solo`` admitted without the sidecar, beside a reconciled policy; then it
    must be reported, though nothing else changes in the namespace: the pod's own appearance
    must be enough."""
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=policy("studio", "studio"))
    wait_until(
        lambda: condition(policy_status(cp, namespace, "studio"), "Ready"),
        30,
        what="the policy reconciled",
    )
    bare = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "solo", "labels": {"app": "studio", **labels}},
        "spec": {"containers": [{"name": "app", "image": "registry.local/app:1"}]},
    }
    with webhook_unreachable(cp, sluice):
        created = cp.request("POST", f"/api/v1/namespaces/{namespace}/pods", bare)
    assert "initContainers" not in created["spec"]  # failurePolicy Ignore: no sidecar

    def warned() -> bool:
        found = cp.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
        return any(
            e["reason"] == "SidecarMissing" and e["involvedObject"]["name"] == "solo" for e in found
        )

    wait_until(warned, 30, what="a SidecarMissing Event on the pod")
    status = policy_status(cp, namespace, "studio")
    assert f"{namespace}/solo" in condition(status, "Injected")["message"]


def test_a_pod_admitted_without_the_sidecar_while_the_operator_runs_is_reported_at_once(
    sluice: SluiceDeployment, control_plane: ControlPlane, namespace: str
) -> None:
    labels = {"sluice.dev/inject": "true"}
    bare_pod_missed_while_the_operator_runs(sluice, control_plane, namespace, labels)


def test_a_pod_opted_in_by_its_namespace_label_and_missed_is_reported_at_once(
    sluice: SluiceDeployment, control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.kubectl("label", "namespace", namespace, "sluice.dev/inject=enabled")
    bare_pod_missed_while_the_operator_runs(sluice, control_plane, namespace, {})


def labelled_deployment(name: str) -> str:
    """Opted in by its pod-template label (no annotation for the operator to copy)."""
    body = yaml.safe_load(deployment(name, 1, annotate=False))
    body["spec"]["template"]["metadata"]["labels"]["sluice.dev/inject"] = "true"
    return yaml.safe_dump(body)


def test_a_pod_admitted_while_the_webhook_was_down_is_reported_until_rolled(
    sluice: SluiceDeployment, control_plane: ControlPlane, namespace: str, fake_kubelet, tmp_path
) -> None:
    kubelet = fake_kubelet(
        namespace, "sluice.dev/injected=true", sidecar_launch(control_plane, tmp_path)
    )
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=policy("studio", "studio"))
    sluice.stop_operator()
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=labelled_deployment("studio"))
    pods = f"/api/v1/namespaces/{namespace}/pods?labelSelector=app%3Dstudio"
    (missed,) = wait_until(
        lambda: control_plane.request("GET", pods)["items"],
        30,
        what="the Deployment's pod, admitted without the webhook",
    )
    assert "initContainers" not in missed["spec"]  # failurePolicy Ignore: no sidecar

    replica = start_replica(sluice)  # the operator back, with its /metrics served
    name = missed["metadata"]["name"]
    status = wait_until(
        lambda: (
            (s := policy_status(control_plane, namespace, "studio"))
            and condition(s, "Injected").get("status") == "False"
            and s
        ),
        30,
        what="Injected=False on the policy",
    )
    assert f"{namespace}/{name}" in condition(status, "Injected")["message"]
    assert condition(status, "Ready")["status"] == "False"

    def events() -> list[tuple[str, str]]:
        found = control_plane.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
        return [
            (e["involvedObject"]["kind"], e["involvedObject"]["name"])
            for e in found
            if e["reason"] == "SidecarMissing"
        ]

    wait_until(
        lambda: {("Pod", name), ("LlmPolicy", "studio")} <= set(events()),
        30,
        what="SidecarMissing Events on the pod and on the policy",
    )
    gauge = f'sluice_operator_sidecars{{namespace="{namespace}",policy="studio",state="missing"}}'
    assert replica.scrape()[gauge] == 1

    # Rolling the workload injects the new pod; the report clears.
    control_plane.kubectl("rollout", "restart", "-n", namespace, "deployment/studio")
    wait_until(lambda: len(kubelet.slots()) == 1, 60, what="the rolled pod, injected")
    wait_until(
        lambda: (
            condition(policy_status(control_plane, namespace, "studio"), "Ready").get("status")
            == "True"
        ),
        60,
        what="the policy Ready again once no pod misses the sidecar",
    )
    assert replica.scrape()[gauge] == 0
