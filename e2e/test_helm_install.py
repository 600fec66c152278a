"""``helm install`` for real: the chart on its own control plane, the operator run from its image.

The fake kubelet runs the operator's Pod exactly as the chart's Deployment renders it (from
the image ``scripts/images`` built: its command and args, env, the ServiceAccount token the
admission plugin mounts at the standard path, its volumes; ``e2e/harness/pods.py``), so the
operator logs in in-cluster with the chart's own RBAC. The API server reaches the webhook
through the chart's Service (``e2e/harness/services.py`` plays kube-proxy for loopback
ClusterIPs). Then a user's steps: annotate a Deployment, see its Pods injected, apply a
policy, see it Ready and synced, ``helm upgrade`` with a changed value, ``helm uninstall``.

A control plane of its own (the ``cluster`` fixture): the session one carries the hand-made
install of ``e2e/sluice.py`` (same cluster-scoped names), which helm would refuse to adopt.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.harness.controlplane import ControlPlane
from e2e.harness.helm_cluster import INJECTED_SELECTOR, RELEASE_NAMESPACE, HelmCluster
from e2e.harness.images import Image
from e2e.harness.kubelet import FakeKubelet
from e2e.harness.processes import wait_until
from e2e.sluice import WEBHOOK_CONFIGURATION, sidecar_launch
from e2e.workloads import (
    admin_token,
    condition,
    configmap_owners,
    configmap_version,
    deployment,
    policy,
    policy_status,
    running_sidecars,
    versions,
)

pytestmark = pytest.mark.e2e
CHART = Path(__file__).resolve().parents[1] / "helm" / "sluice"
RELEASE, APP_NAMESPACE = "sluice", "studio"
MANAGED_BY_SLUICE = "app.kubernetes.io/managed-by=sluice"  # on what the operator makes


def image_values(images: dict[str, Image]) -> list[str]:
    values = []
    for key, role in (("image", "operator"), ("sidecar", "sidecar")):
        repository, tag = images[role].name.rsplit(":", 1)
        values += ["--set", f"{key}.repository={repository}", "--set", f"{key}.tag={tag}"]
    return values


def webhook_injects(cp: ControlPlane, namespace: str) -> bool:
    """A dry-run Pod that opts in comes back with the sidecar (webhook reached via Service)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "probe-", "labels": {"sluice.dev/inject": "true"}},
        "spec": {"containers": [{"name": "app", "image": "app"}]},
    }
    created = cp.request("POST", f"/api/v1/namespaces/{namespace}/pods?dryRun=All", pod)
    spec = created["spec"]
    return any(c["name"] == "sluice-proxy" for c in spec.get("initContainers", []))


def operator_pod(kubelet: FakeKubelet, exclude: str = "") -> str:
    """Name of the operator Pod the kubelet runs (other than ``exclude``)."""

    def running() -> str | None:
        assert not kubelet.errors, kubelet.errors
        return next((name for name in kubelet.slots() if name != exclude), None)

    return wait_until(running, 120, what="the operator pod to run")


@pytest.mark.timeout(600)
def test_helm_install_upgrade_uninstall(
    helm_cluster: HelmCluster, images: dict[str, Image]
) -> None:
    cluster = helm_cluster
    operator_kubelet = cluster.operator_kubelet(images)
    cluster.cp.kubectl("create", "namespace", APP_NAMESPACE)
    app_kubelet = cluster.kubelet(
        APP_NAMESPACE, INJECTED_SELECTOR, sidecar_launch(cluster.cp, cluster.workdir / "sidecars")
    )
    try:
        install_and_use(cluster, images, operator_kubelet, app_kubelet)
        upgrade(cluster, operator_kubelet, app_kubelet)
        uninstall(cluster, operator_kubelet)
    except BaseException:
        print(cluster.diagnose())
        raise


def install_and_use(
    cluster: HelmCluster, images: dict[str, Image], operator: FakeKubelet, app: FakeKubelet
) -> None:
    cp = cluster.cp
    notes = cluster.helm_run(
        "install", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE, "--create-namespace",
        *image_values(images), "--wait", "--timeout", "180s",
        "--set", "sidecar.resources.requests.cpu=20m",
        "--set", "sidecar.imagePullSecrets[0].name=sidecar-registry",
    )  # fmt: skip
    assert f"sidecar image:  {images['sidecar'].name}" in notes  # NOTES.txt: the next steps
    assert "annotate deployment NAME sluice.dev/inject=true" in notes
    pod = cp.request("GET", f"/api/v1/namespaces/{RELEASE_NAMESPACE}/pods/{operator_pod(operator)}")
    (container,) = pod["spec"]["containers"]
    assert container["image"] == images["operator"].name
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/var/run/secrets/kubernetes.io/serviceaccount" in mounts  # the token, in-cluster
    wait_until(lambda: webhook_injects(cp, APP_NAMESPACE), 90, what="the webhook via its Service")

    cp.kubectl("apply", "-n", APP_NAMESPACE, "-f", "-", input=deployment("studio", 1))
    (slot,) = running_sidecars(app, 1)
    (sidecar,) = [c for c in slot.pod["spec"]["initContainers"] if c["name"] == "sluice-proxy"]
    assert sidecar["image"] == images["sidecar"].name  # the chart's sidecar values
    assert sidecar["resources"]["requests"] == {"cpu": "20m", "memory": "64Mi"}
    assert {"name": "sidecar-registry"} in slot.pod["spec"]["imagePullSecrets"]
    token = admin_token(cp, APP_NAMESPACE)
    wait_until(
        lambda: versions(app, token) == {configmap_version(cp, APP_NAMESPACE, "studio")},
        60,
        what="the sidecar to get its configuration from the operator",
    )
    cp.kubectl("apply", "-n", APP_NAMESPACE, "-f", "-", input=policy("studio", "studio"))
    wait_for_policy_synced(cp, "1/1")
    table = cp.kubectl("get", "sluice", "-n", APP_NAMESPACE).stdout
    assert "True" in table and "1/1" in table, table


def wait_for_policy_synced(cp: ControlPlane, summary: str) -> dict:
    return wait_until(
        lambda: (
            (s := policy_status(cp, APP_NAMESPACE, "studio"))
            and condition(s, "Ready").get("status") == "True"
            and s.get("sidecars", {}).get("summary") == summary
            and s
        ),
        60,
        what="the policy to report Ready and synced",
    )


def upgrade(cluster: HelmCluster, operator: FakeKubelet, app: FakeKubelet) -> None:
    cp = cluster.cp
    before = operator_pod(operator)
    cluster.helm_run(
        "upgrade", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE, "--reuse-values",
        "--set", "push.attempts=3", "--wait", "--timeout", "180s",
    )  # fmt: skip
    after = operator_pod(operator, exclude=before)
    pod = cp.request("GET", f"/api/v1/namespaces/{RELEASE_NAMESPACE}/pods/{after}")
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["SLUICE_OPERATOR_PUSH_ATTEMPTS"] == "3"
    wait_until(lambda: before not in operator.slots(), 60, what="the old operator pod to stop")
    # The upgraded operator does the work: a policy change reaches the sidecar.
    token = admin_token(cp, APP_NAMESPACE)
    old = versions(app, token)
    cp.kubectl(
        "apply", "-n", APP_NAMESPACE, "-f", "-",
        input=policy("studio", "studio", retry={"maxAttempts": 2}),
    )  # fmt: skip
    wait_until(
        lambda: (v := versions(app, token)) and v != old, 60, what="the sidecar on the new version"
    )
    wait_for_policy_synced(cp, "1/1")


def uninstall(cluster: HelmCluster, operator: FakeKubelet) -> None:
    cp = cluster.cp
    cluster.helm_run("uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait", "--timeout", "120s")
    wait_until(lambda: not operator.slots(), 60, what="the operator pod to stop")
    for path in (
        f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{WEBHOOK_CONFIGURATION}",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/sluice-operator",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/sluice-operator",
        f"/apis/apps/v1/namespaces/{RELEASE_NAMESPACE}/deployments/sluice-operator",
        f"/api/v1/namespaces/{RELEASE_NAMESPACE}/services/sluice-operator",
    ):
        assert not cp.api.exists(path), f"left behind: {path}"
    # Later Pods are untouched: an opted-in Pod is created as it is, without the sidecar.
    assert not webhook_injects(cp, APP_NAMESPACE)
    # helm never deletes crds/: the CRDs (and the users' policies) stay, as documented.
    assert cp.api.exists(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/llmpolicies.sluice.dev"
    )
    # The app runs on, and its ConfigMap with it: owned by the Deployment, it goes when that does.
    studio = cp.request("GET", f"/apis/apps/v1/namespaces/{APP_NAMESPACE}/deployments/studio")
    owner = ("Deployment", "studio", studio["metadata"]["uid"])
    assert configmap_owners(cp, APP_NAMESPACE, "studio") == [owner]
    # The Secrets the operator made at run time have no owner and stay; the label that
    # docs/quickstart.md deletes them by selects exactly them.
    unowned = {
        f"{APP_NAMESPACE}/secrets/sluice-sidecar-admin",
        f"{RELEASE_NAMESPACE}/secrets/sluice-webhook-tls",
    }
    assert operator_made(cp) == unowned
    assert operator_made(cp, labelSelector=MANAGED_BY_SLUICE) == unowned
    remove_left_resources_and_crds(cp)


def remove_left_resources_and_crds(cp: ControlPlane) -> None:
    """docs/quickstart.md's removal after the operator is gone: nothing lifts kopf's finalizer
    on the policies and budgets it handled, so the documented patch does, then the CRDs go."""
    left = [
        (kind, item["metadata"]["namespace"], item["metadata"]["name"])
        for kind in ("llmpolicies", "llmbudgets")
        for item in cp.api.get(f"/apis/sluice.dev/v1alpha1/{kind}")["items"]
    ]
    assert left, "the test's policy should still be there"
    for kind, namespace, name in left:
        cp.kubectl(
            "patch", kind, name, "-n", namespace, "--type=merge",
            "-p", '{"metadata":{"finalizers":null}}',
        )  # fmt: skip
    cp.kubectl("delete", "-f", str(CHART / "crds"), "--wait", "--timeout=60s", timeout=90)
    for crd in ("llmpolicies.sluice.dev", "llmbudgets.sluice.dev"):
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}"
        wait_until(lambda p=path: not cp.api.exists(p), 60, what=f"{crd} to be deleted")


def operator_made(cp: ControlPlane, **params: str) -> set[str]:
    """ConfigMaps and Secrets named sluice-* that no owner will garbage-collect."""
    found = set()
    for kind in ("configmaps", "secrets"):
        for item in cp.api.get(f"/api/v1/{kind}", **params)["items"]:
            meta = item["metadata"]
            if meta["name"].startswith("sluice-") and not meta.get("ownerReferences"):
                found.add(f"{meta['namespace']}/{kind}/{meta['name']}")
    return found
