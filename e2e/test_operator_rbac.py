"""The operator's rights on the real API server: what RBAC grants its ServiceAccount (asked as
``kubectl auth can-i`` asks, with SubjectAccessReviews), and the chart's admission policy that
holds its Pod and Deployment patches to its own sluice.dev/ labels and annotations."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from e2e.harness.controlplane import ControlPlane, KubectlError
from e2e.harness.processes import wait_until
from e2e.sluice import OPERATOR_NAMESPACE, SluiceDeployment
from e2e.workloads import deployment

pytestmark = pytest.mark.e2e
CHART = Path(__file__).resolve().parents[1] / "helm/sluice"
OPERATOR = f"system:serviceaccount:{OPERATOR_NAMESPACE}:sluice-operator"

# (verb, group, resource, name): what the design needs, and nothing more (docs/operator.md).
ALLOWED = [
    ("patch", "", "pods", ""),
    ("watch", "", "pods", ""),
    ("patch", "apps", "deployments", ""),
    ("create", "", "secrets", ""),
    ("get", "", "secrets", "sluice-sidecar-admin"),
    ("create", "", "configmaps", ""),
    ("update", "", "configmaps", ""),
    ("patch", "sluice.dev", "llmpolicies/status", ""),
    ("patch", "sluice.dev", "llmbudgets/status", ""),
    ("patch", "kopf.dev", "clusterkopfpeerings", "sluice"),
    ("patch", "admissionregistration.k8s.io", "mutatingwebhookconfigurations",
     "sluice-sidecar-injector"),
    ("create", "", "events", ""),
]  # fmt: skip
DENIED = [
    ("create", "", "pods", ""),
    ("delete", "", "pods", ""),
    ("update", "", "pods", ""),
    ("create", "", "pods/exec", ""),
    ("delete", "apps", "deployments", ""),
    ("update", "apps", "deployments", ""),
    ("patch", "apps", "deployments/scale", ""),
    ("patch", "apps", "statefulsets", ""),
    ("get", "", "secrets", ""),
    ("get", "", "secrets", "openai-key"),  # a provider key a policy names: never read
    ("list", "", "secrets", ""),
    ("watch", "", "secrets", ""),
    ("update", "", "secrets", ""),
    ("update", "", "secrets", "sluice-sidecar-admin"),
    ("get", "", "secrets", "sluice-webhook-tls"),  # its certificate: only in its own namespace
    ("update", "", "secrets", "sluice-webhook-tls"),
    ("delete", "", "secrets", ""),
    ("delete", "", "configmaps", ""),
    ("list", "", "configmaps", ""),
    ("delete", "sluice.dev", "llmpolicies", ""),
    ("patch", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "other"),
    ("patch", "admissionregistration.k8s.io", "validatingadmissionpolicies", ""),
    ("create", "rbac.authorization.k8s.io", "rolebindings", ""),
    ("escalate", "rbac.authorization.k8s.io", "clusterroles", ""),
    ("impersonate", "", "serviceaccounts", ""),
    ("get", "", "nodes", ""),
]

# In the operator's own namespace (the chart's Role), besides the above.
ALLOWED_AT_HOME = [
    ("get", "", "secrets", "sluice-webhook-tls"),
    ("update", "", "secrets", "sluice-webhook-tls"),
]
DENIED_AT_HOME = [
    ("get", "", "secrets", ""),
    ("get", "", "secrets", "other"),
    ("update", "", "secrets", ""),
    ("delete", "", "secrets", "sluice-webhook-tls"),
]


def can_i(
    cp: ControlPlane, verb: str, group: str, resource: str, name: str, namespace: str = "team-a"
) -> bool:
    plural, _, sub = resource.partition("/")
    attributes = {"verb": verb, "group": group, "resource": plural, "namespace": namespace}
    if sub:
        attributes["subresource"] = sub
    if name:
        attributes["name"] = name
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": OPERATOR, "resourceAttributes": attributes},
    }
    answer = cp.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    return bool(answer["status"].get("allowed"))


def test_the_operator_has_exactly_the_rights_its_design_needs(
    sluice: SluiceDeployment, control_plane: ControlPlane
) -> None:
    assert [a for a in ALLOWED if not can_i(control_plane, *a)] == []
    assert [d for d in DENIED if can_i(control_plane, *d)] == []
    home = OPERATOR_NAMESPACE
    assert [a for a in ALLOWED_AT_HOME if not can_i(control_plane, *a, namespace=home)] == []
    assert [d for d in DENIED_AT_HOME if can_i(control_plane, *d, namespace=home)] == []


@pytest.fixture
def admission_policy(control_plane: ControlPlane, helm: Path) -> Iterator[None]:
    rendered = subprocess.run(
        [str(helm), "template", "sluice", str(CHART), "-n", OPERATOR_NAMESPACE,
         "--show-only", "templates/admission-policy.yaml"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    control_plane.apply(rendered)
    yield
    for kind in ("validatingadmissionpolicybindings", "validatingadmissionpolicies"):
        control_plane.kubectl("delete", kind, "sluice-operator-patches", check=False)


def test_the_operator_may_patch_only_its_own_labels_and_annotations(
    sluice: SluiceDeployment, control_plane: ControlPlane, namespace: str, admission_policy: None
) -> None:
    cp = control_plane
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=deployment("app", 0, annotate=False))

    def patch(change: dict, *dry_run: str) -> None:
        cp.kubectl(
            "patch", "-n", namespace, "deployment/app", "--type=merge", "-p", json.dumps(change),
            *dry_run, kubeconfig=sluice.kubeconfig,
        )  # fmt: skip

    def template(**metadata: dict) -> dict:
        return {"spec": {"template": {"metadata": metadata}}}

    def refused(change: dict, *dry_run: str) -> bool:
        try:
            patch(change, *dry_run)
        except KubectlError as error:
            return "sluice-operator-patches" in str(error)
        return False

    image = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "evil"}]}}}}
    # Dry runs until the API server has loaded the policy: admission runs, nothing is stored.
    wait_until(lambda: refused(image, "--dry-run=server"), 30, what="the admission policy in force")
    assert refused(image)
    assert refused({"spec": {"replicas": 5}})
    assert refused(template(labels={"team": "other"}))
    assert refused({"metadata": {"annotations": {"owner": "someone-else"}}})
    # What the operator does: sluice.dev/ keys on the Deployment and its template (keys the
    # running operator leaves alone: its opt-in keys would start it reconciling this app).
    own = {"sluice.dev/provider-key-secrets": "openai"}
    patch(template(annotations=own, labels={"sluice.dev/example": "yes"}))
    patch({"metadata": {"annotations": {"sluice.dev/example": "yes"}}})
    stored = cp.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/app")
    assert stored["spec"]["template"]["metadata"]["labels"]["sluice.dev/example"] == "yes"
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/app:1"
    # Pods: only the operator's own annotation (the configuration version it pushed).
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"},
           "spec": {"containers": [{"name": "app", "image": "registry.local/app:1"}]}}  # fmt: skip
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))
    annotate = ["annotate", "-n", namespace, "pod/bare", "--overwrite"]
    with pytest.raises(KubectlError, match="sluice-operator-patches"):
        cp.kubectl(*annotate, "owner=someone", kubeconfig=sluice.kubeconfig)
    cp.kubectl(*annotate, "sluice.dev/config-version=v1", kubeconfig=sluice.kubeconfig)
    # The admin is not bound by it.
    cp.kubectl("patch", "-n", namespace, "deployment/app", "--type=merge", "-p",
               json.dumps({"spec": {"replicas": 0}}))  # fmt: skip


@pytest.fixture
def secrets_policy(control_plane: ControlPlane, helm: Path) -> Iterator[None]:
    rendered = subprocess.run(
        [str(helm), "template", "sluice", str(CHART), "-n", OPERATOR_NAMESPACE,
         "--show-only", "templates/rbac.yaml"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    policies = [d for d in yaml.safe_load_all(rendered) if d and "AdmissionPolicy" in d["kind"]]
    assert [d["kind"] for d in policies] == [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    control_plane.apply(yaml.safe_dump_all(policies))
    yield
    for kind in ("validatingadmissionpolicybindings", "validatingadmissionpolicies"):
        control_plane.kubectl("delete", kind, "sluice-operator-secrets", check=False)


def test_the_operator_may_create_only_its_own_secrets(
    sluice: SluiceDeployment, control_plane: ControlPlane, namespace: str, secrets_policy: None
) -> None:
    """``create`` cannot be limited by name in RBAC: without the policy, a stolen operator
    token could create a ServiceAccount-token Secret under a name it may read, and read it."""
    cp = control_plane

    def refused(
        name: str, where: str = namespace, kind: str = "Opaque", labelled: bool = True
    ) -> bool:
        metadata: dict = {"name": name}
        if labelled:
            metadata["labels"] = {"app.kubernetes.io/managed-by": "sluice"}
        if kind == "kubernetes.io/service-account-token":
            metadata["annotations"] = {"kubernetes.io/service-account.name": "default"}
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": kind}
        try:
            cp.kubectl("create", "-n", where, "--dry-run=server", "-f", "-",
                       input=json.dumps(secret), kubeconfig=sluice.kubeconfig)  # fmt: skip
        except KubectlError as error:
            return "sluice-operator-secrets" in str(error)
        return False

    token = "kubernetes.io/service-account-token"
    # Dry runs until the API server has loaded the policy: admission runs, nothing is stored.
    wait_until(lambda: refused("sluice-sidecar-admin", kind=token), 30, what="the policy in force")
    assert refused("openai-key")  # a Secret a policy names, planted with a chosen key
    assert refused("sluice-webhook-tls")  # the certificate only in the operator's namespace
    assert refused("sluice-sidecar-admin", labelled=False)
    # What the operator does: its admin token in an app namespace, its certificate in its own.
    assert not refused("sluice-sidecar-admin")
    assert not refused("sluice-webhook-tls", OPERATOR_NAMESPACE)


def test_network_policies_admit_only_the_operator_and_the_sidecars(
    control_plane: ControlPlane, helm: Path, namespace: str
) -> None:
    rendered = subprocess.run(
        [str(helm), "template", "sluice", str(CHART), "-n", OPERATOR_NAMESPACE,
         "--set", "networkPolicy.enabled=true",
         "--set", f"networkPolicy.namespaces={{{namespace}}}",
         "--show-only", "templates/networkpolicy.yaml"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    control_plane.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    control_plane.apply(rendered)  # the API server takes them (no CNI here enforces them)
    try:
        path = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies"
        (sidecars,) = control_plane.request("GET", path)["items"]
        admin, rest = sidecars["spec"]["ingress"]
        (port,) = admin["ports"]
        ((source,),) = [admin["from"]]
        assert source["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": OPERATOR_NAMESPACE
        }
        # Every other port of the app stays reachable: the ranges around the admin port.
        tcp = sorted((p["port"], p["endPort"]) for p in rest["ports"] if p["protocol"] == "TCP")
        assert tcp == [(1, port["port"] - 1), (port["port"] + 1, 65535)]
        operator = control_plane.request(
            "GET",
            f"/apis/networking.k8s.io/v1/namespaces/{OPERATOR_NAMESPACE}"
            "/networkpolicies/sluice-operator",
        )
        usage, _ = operator["spec"]["ingress"]
        assert usage["ports"] == [{"protocol": "TCP", "port": 8081}]
        assert usage["from"][0]["podSelector"]["matchLabels"] == {"sluice.dev/injected": "true"}
    finally:
        control_plane.kubectl("delete", "-f", "-", input=rendered, check=False)
