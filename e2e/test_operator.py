"""The operator end to end on the real control plane, under its least-privilege ClusterRole.

Real kube-apiserver, etcd and kube-controller-manager; the fake kubelet runs the real sidecar
for every injected Pod at its own loopback IP, so pushes cross real HTTP.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from e2e.harness.controlplane import ControlPlane
from e2e.harness.kubelet import FakeKubelet, KubeletFactory
from e2e.harness.processes import wait_until
from e2e.sluice import SluiceDeployment, sidecar_config, sidecar_launch
from e2e.workloads import (
    admin_token,
    condition,
    configmap_owners,
    configmap_path,
    configmap_version,
    deployment,
    policy,
    policy_status,
    running_sidecars,
    versions,
)
from sluice_sidecar.contract.pod import DATA_PORT

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]


def start_workload(
    cp: ControlPlane,
    namespace: str,
    fake_kubelet: KubeletFactory,
    tmp_path: Path,
    name: str = "studio",
    replicas: int = 3,
) -> tuple[FakeKubelet, str]:
    kubelet = fake_kubelet(namespace, "sluice.dev/injected=true", sidecar_launch(cp, tmp_path))
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=deployment(name, replicas))
    running_sidecars(kubelet, replicas)
    token = admin_token(cp, namespace)
    # Every sidecar ends up with the workload's configuration (built-in defaults for now).
    wait_until(
        lambda: versions(kubelet, token) == {configmap_version(cp, namespace, name)},
        30,
        what="sidecars to run the workload's configuration",
    )
    return kubelet, token


def test_annotated_deployment_gets_injected_pods(
    sluice: SluiceDeployment, control_plane: ControlPlane, namespace: str, fake_kubelet, tmp_path
) -> None:
    kubelet, _ = start_workload(control_plane, namespace, fake_kubelet, tmp_path, replicas=2)
    pod = next(iter(kubelet.slots().values())).pod
    (sidecar,) = [c for c in pod["spec"]["initContainers"] if c["name"] == "sluice-proxy"]
    assert sidecar["restartPolicy"] == "Always"  # a native sidecar on 1.35
    assert sidecar["securityContext"]["runAsNonRoot"] is True
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
    app = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in app["env"]}
    assert env["OPENAI_BASE_URL"] == f"http://127.0.0.1:{DATA_PORT}/v1"
    assert env["ANTHROPIC_BASE_URL"] == f"http://127.0.0.1:{DATA_PORT}"
    volumes = {v["name"] for v in pod["spec"]["volumes"]}
    assert {"sluice-config", "sluice-admin-token", "sluice-provider-keys"} <= volumes
    # The operator copied the annotation into the template: one rollout with the sidecar.
    template = control_plane.request(
        "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/studio"
    )["spec"]["template"]["metadata"]
    assert template["annotations"]["sluice.dev/inject"] == "true"

    # Removing the annotation rolls the pods back without the sidecar.
    control_plane.kubectl("annotate", "-n", namespace, "deployment/studio", "sluice.dev/inject-")
    wait_until(
        lambda: (
            "sluice.dev/inject"
            not in (
                control_plane.request(
                    "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/studio"
                )["spec"]["template"]["metadata"].get("annotations")
                or {}
            )
        ),
        30,
        what="the template annotation to be removed",
    )


def test_apply_policy_reconfigures_every_sidecar(
    sluice: SluiceDeployment, control_plane: ControlPlane, namespace: str, fake_kubelet, tmp_path
) -> None:
    kubelet, token = start_workload(control_plane, namespace, fake_kubelet, tmp_path)
    before = versions(kubelet, token)
    control_plane.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=policy(
            "studio",
            "studio",
            retry={"maxAttempts": 2},
            operations={"Storyboard": {"timeoutSeconds": 30}},
        ),
    )
    wait_until(
        lambda: (v := versions(kubelet, token)) != before and len(v) == 1,
        30,
        what="every sidecar to run the new configuration",
    )
    (slot,) = list(kubelet.slots().values())[:1]
    config = sidecar_config(slot, token)["config"]
    assert config["retry"]["maxAttempts"] == 2
    assert config["operations"]["Storyboard"]["timeoutSeconds"] == 30
    status = wait_until(
        lambda: (
            (s := policy_status(control_plane, namespace, "studio"))
            and condition(s, "Ready").get("status") == "True"
            and s
        ),
        30,
        what="the policy to report Ready",
    )
    assert status["sidecars"] == {"desired": 3, "synced": 3, "summary": "3/3"}
    assert status["workloads"] == [f"{namespace}/studio"]
    table = control_plane.kubectl("get", "llmpolicies", "-n", namespace).stdout
    assert "True" in table and "3/3" in table

    # Deleting the policy returns the sidecars to the defaults.
    control_plane.kubectl("delete", "llmpolicy", "studio", "-n", namespace)
    wait_until(lambda: versions(kubelet, token) == before, 30, what="sidecars back on the defaults")


def test_invalid_policy_is_reported_and_never_reaches_sidecars(
    sluice: SluiceDeployment, control_plane: ControlPlane, namespace: str, fake_kubelet, tmp_path
) -> None:
    kubelet, token = start_workload(control_plane, namespace, fake_kubelet, tmp_path, replicas=2)
    before = versions(kubelet, token)
    # No provider at all: nothing to compile (a policy naming a Secret that does not exist
    # is valid: test_provider_keys.py).
    control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input=policy("keys", "studio", providers=[])
    )
    status = wait_until(
        lambda: (
            (s := policy_status(control_plane, namespace, "keys"))
            and condition(s, "Valid").get("status") == "False"
            and s
        ),
        30,
        what="Valid=False on the policy",
    )
    message = condition(status, "Valid")["message"]
    assert "do not compile together" in message and "keeps its last good configuration" in message
    assert condition(status, "Ready")["status"] == "False"
    events = wait_until(
        lambda: [
            e
            for e in control_plane.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
            if e["reason"] == "InvalidPolicy"
        ],
        30,
        what="an InvalidPolicy event",
    )
    assert "do not compile together" in events[0]["message"]
    assert versions(kubelet, token) == before  # the sidecars kept the last good configuration

    # Fixing the policy makes it valid, and it reaches the sidecars.
    control_plane.kubectl(
        "patch", "llmpolicy", "keys", "-n", namespace, "--type=merge",
        "-p", '{"spec": {"providers": [{"name": "openai", "type": "openai"}]}}',
    )  # fmt: skip
    wait_until(
        lambda: (
            condition(policy_status(control_plane, namespace, "keys"), "Ready").get("status")
            == "True"
        ),
        30,
        what="the policy to become Ready once fixed",
    )
    assert versions(kubelet, token) != before


def test_operator_restart_loses_nothing(
    sluice: SluiceDeployment, control_plane: ControlPlane, namespace: str, fake_kubelet, tmp_path
) -> None:
    kubelet, token = start_workload(control_plane, namespace, fake_kubelet, tmp_path, replicas=2)
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=policy("p", "studio"))
    wait_until(
        lambda: (
            condition(policy_status(control_plane, namespace, "p"), "Ready").get("status") == "True"
        ),
        30,
        what="Ready before the restart",
    )
    sluice.stop_operator()
    control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input=policy("p", "studio", retry={"maxAttempts": 1})
    )
    sluice.start_operator()
    wait_until(
        lambda: (
            {
                sidecar_config(s, token)["config"]["retry"]["maxAttempts"]
                for s in kubelet.slots().values()
            }
            == {1}
        ),
        30,
        what="the change made while the operator was down to reach the sidecars",
    )
    status = wait_until(
        lambda: (
            (s := policy_status(control_plane, namespace, "p"))
            and s.get("observedGeneration") == 2
            and condition(s, "Ready").get("status") == "True"
            and s
        ),
        30,
        what="status observed the new generation",
    )
    assert status["sidecars"]["synced"] == 2


def test_namespace_label_injects_every_pod_unless_opted_out(
    sluice: SluiceDeployment, control_plane: ControlPlane, namespace: str, fake_kubelet, tmp_path
) -> None:
    control_plane.kubectl("label", "namespace", namespace, "sluice.dev/inject=enabled")
    kubelet = fake_kubelet(
        namespace, "sluice.dev/injected=true", sidecar_launch(control_plane, tmp_path)
    )
    control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input=deployment("plain", 2, annotate=False)
    )
    running_sidecars(kubelet, 2)
    token = admin_token(control_plane, namespace)
    wait_until(
        lambda: versions(kubelet, token) == {configmap_version(control_plane, namespace, "plain")},
        30,
        what="namespace-injected sidecars to get their workload's configuration",
    )
    opted_out = yaml.safe_load(deployment("private", 1, annotate=False))
    opted_out["spec"]["template"]["metadata"]["labels"]["sluice.dev/inject"] = "false"
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(opted_out))
    pod = wait_until(
        lambda: control_plane.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector=app%3Dprivate"
        )["items"],
        30,
        what="the opted-out pod",
    )[0]
    assert [c["name"] for c in pod["spec"]["containers"]] == ["app"]
    assert "initContainers" not in pod["spec"]


def test_deleting_a_deployment_deletes_its_configmap(
    sluice: SluiceDeployment, control_plane: ControlPlane, namespace: str, fake_kubelet, tmp_path
) -> None:
    start_workload(control_plane, namespace, fake_kubelet, tmp_path, replicas=1)
    studio = f"/apis/apps/v1/namespaces/{namespace}/deployments/studio"
    uid = control_plane.request("GET", studio)["metadata"]["uid"]
    assert configmap_owners(control_plane, namespace, "studio") == [("Deployment", "studio", uid)]
    # A ConfigMap stored without an owner (by an older operator) gets it at the next reconcile.
    control_plane.kubectl(
        "patch", "configmap", "sluice-config-studio", "-n", namespace, "--type=json",
        "-p", '[{"op": "remove", "path": "/metadata/ownerReferences"}]',
    )  # fmt: skip
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=policy("studio", "studio"))
    wait_until(
        lambda: (
            configmap_owners(control_plane, namespace, "studio") == [("Deployment", "studio", uid)]
        ),
        30,
        what="the operator to put the owner back on the ConfigMap",
    )
    # kube-controller-manager's garbage collector deletes it with its Deployment.
    control_plane.kubectl("delete", "deployment", "studio", "-n", namespace)
    wait_until(
        lambda: not control_plane.api.exists(configmap_path(namespace, "studio")),
        60,
        what="the garbage collector to delete the ConfigMap",
    )
