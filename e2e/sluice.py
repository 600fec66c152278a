"""Sluice on the real control plane: CRDs, the operator under least privilege, sidecar pods.

``SluiceDeployment.install`` does what ``helm install`` does for the parts a test needs (CRDs,
the operator's ClusterRole and its Role in its own namespace from the chart's rules files, a
ServiceAccount bound to both, the MutatingWebhookConfiguration pointing at the operator),
then starts ``python -m sluice_operator`` with that ServiceAccount's kubeconfig.
``sidecar_launch`` plays the container runtime for injected Pods: it runs the real sidecar at
the Pod's loopback IP with the ports, ConfigMap and admin token the injected container declares.
"""

from __future__ import annotations

import base64
import functools
import json
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from e2e.harness import net, processes
from e2e.harness.client import ApiError
from e2e.harness.controlplane import ControlPlane
from e2e.harness.kubelet import Launch, LaunchFactory, PodSlot
from sluice_sidecar.contract.pod import ADMIN_PORT_NAME, PodEnv

ROOT = Path(__file__).resolve().parents[1]
RULES_FILE = ROOT / "helm/sluice/files/operator-clusterrole-rules.yaml"
ROLE_RULES_FILE = ROOT / "helm/sluice/files/operator-role-rules.yaml"
OPERATOR_NAMESPACE = "sluice-system"
WEBHOOK_CONFIGURATION = "sluice-sidecar-injector"
CRD_NAMES = ("llmpolicies.sluice.dev", "llmbudgets.sluice.dev")


def webhook_configuration(port: int) -> dict[str, Any]:
    """What the chart ships, with a loopback URL instead of the in-cluster Service."""
    hook = {
        "admissionReviewVersions": ["v1"],
        "sideEffects": "NoneOnDryRun",
        "failurePolicy": "Ignore",
        "timeoutSeconds": 10,
        "reinvocationPolicy": "Never",
        "clientConfig": {"url": f"https://127.0.0.1:{port}/inject"},
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ],
    }
    pod_network = {
        "name": "pod-network",
        "expression": "!has(object.spec.hostNetwork) || !object.spec.hostNetwork",
    }
    opted_out_or_label = {
        "matchExpressions": [
            {"key": "sluice.dev/inject", "operator": "NotIn", "values": ["false", "true"]}
        ]
    }
    annotated = (
        "has(object.metadata.annotations) && 'sluice.dev/inject' in object.metadata.annotations"
        " && object.metadata.annotations['sluice.dev/inject'] == 'true'"
    )
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK_CONFIGURATION},
        "webhooks": [
            {
                **hook,
                "name": "pods.inject.sluice.dev",
                "objectSelector": {"matchLabels": {"sluice.dev/inject": "true"}},
                "matchConditions": [pod_network],
            },
            {
                **hook,
                "name": "pods.namespace.inject.sluice.dev",
                "namespaceSelector": {"matchLabels": {"sluice.dev/inject": "enabled"}},
                "objectSelector": opted_out_or_label,
                "matchConditions": [pod_network],
            },
            {
                **hook,
                "name": "pods.annotation.inject.sluice.dev",
                "namespaceSelector": {
                    "matchExpressions": [
                        {"key": "sluice.dev/inject", "operator": "NotIn", "values": ["enabled"]}
                    ]
                },
                "objectSelector": opted_out_or_label,
                "matchConditions": [pod_network, {"name": "annotated", "expression": annotated}],
            },
        ],
    }


def grant_namespace_rules(cp: ControlPlane) -> None:
    """The chart's Role and RoleBinding in the operator's namespace (its webhook certificate),
    applied and in effect before the operator starts."""
    meta = {"name": "sluice-operator", "namespace": OPERATOR_NAMESPACE}
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta}
    role["rules"] = yaml.safe_load(ROLE_RULES_FILE.read_text())
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": meta["name"]},
        "subjects": [{"kind": "ServiceAccount", **meta}],
    }
    cp.apply(yaml.safe_dump_all([role, binding]))
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{OPERATOR_NAMESPACE}:sluice-operator",
            "resourceAttributes": {
                "verb": "get",
                "resource": "secrets",
                "name": "sluice-webhook-tls",
                "namespace": OPERATOR_NAMESPACE,
            },
        },
    }
    path = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    processes.wait_until(
        lambda: cp.request("POST", path, review)["status"].get("allowed"),
        30,
        what="the operator's Role to take effect",
    )


def wait_for_crds(cp: ControlPlane, timeout: float = 30) -> None:
    """Wait until both CRDs are Established (``kubectl wait`` fails when it looks before the
    API server has written any condition)."""

    def established(name: str) -> bool:
        crd = cp.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        return any(
            c["type"] == "Established" and c["status"] == "True"
            for c in crd.get("status", {}).get("conditions") or []
        )

    for name in CRD_NAMES:
        processes.wait_until(functools.partial(established, name), timeout, what=f"CRD {name}")


@dataclass
class SluiceDeployment:
    cp: ControlPlane
    kubeconfig: Path
    workdir: Path
    webhook_port: int
    usage_port: int = 0
    operator: processes.ManagedProcess | None = None

    @classmethod
    def install(cls, cp: ControlPlane, sa_kubeconfig: Any, workdir: Path) -> SluiceDeployment:
        cp.kubectl("apply", "-f", str(ROOT / "crds"))
        wait_for_crds(cp)
        rules = yaml.safe_load(RULES_FILE.read_text())
        kubeconfig = sa_kubeconfig("sluice-operator", namespace=OPERATOR_NAMESPACE, rules=rules)
        grant_namespace_rules(cp)
        port = net.free_port()
        cp.apply(yaml.safe_dump(webhook_configuration(port)))
        return cls(cp, kubeconfig, workdir, port, net.free_port())

    def start_operator(self) -> None:
        env = {
            "KUBECONFIG": str(self.kubeconfig),
            "SLUICE_OPERATOR_NAMESPACE": OPERATOR_NAMESPACE,
            "SLUICE_OPERATOR_WEBHOOK_ADDR": "127.0.0.1",
            "SLUICE_OPERATOR_WEBHOOK_PORT": str(self.webhook_port),
            "SLUICE_OPERATOR_WEBHOOK_EXTRA_SANS": "127.0.0.1,localhost",
            "SLUICE_OPERATOR_SIDECAR_IMAGE": "sluice-sidecar:e2e",
            "SLUICE_OPERATOR_USAGE_ADDR": "127.0.0.1",
            "SLUICE_OPERATOR_USAGE_PORT": str(self.usage_port),
            "SLUICE_OPERATOR_USAGE_REPORT_URL": f"http://127.0.0.1:{self.usage_port}/usage",
            "SLUICE_OPERATOR_USAGE_INTERVAL_S": "1",
        }
        liveness = net.free_port()
        self.operator = processes.ManagedProcess(
            "operator",
            [
                sys.executable,
                "-m",
                "sluice_operator",
                "--verbose",
                "--liveness",
                f"http://127.0.0.1:{liveness}/healthz",
            ],
            self.workdir / f"operator-{liveness}.log",
            env=env,
        )
        processes.wait_until(
            lambda: self._ca_bundle_set() or self._check_running(),
            60,
            what="the operator to start and set the webhook caBundle",
        )
        # The API server picks webhook configurations up through an informer: wait until a
        # dry-run pod of an opted-in shape comes back injected.
        processes.wait_until(self._webhook_active, 30, what="the injection webhook to answer")

    def _check_running(self) -> bool:
        assert self.operator is not None
        if not self.operator.running():
            raise RuntimeError(f"operator exited:\n{self.operator.tail(60)}")
        return False

    def _ca_bundle_set(self) -> bool:
        config = self.cp.request(
            "GET",
            f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{WEBHOOK_CONFIGURATION}",
        )
        return all(h["clientConfig"].get("caBundle") for h in config["webhooks"])

    def _webhook_active(self) -> bool:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"generateName": "probe-", "labels": {"sluice.dev/inject": "true"}},
            "spec": {"containers": [{"name": "app", "image": "app"}]},
        }
        created = self.cp.request("POST", "/api/v1/namespaces/default/pods?dryRun=All", pod)
        return any(
            c["name"] == "sluice-proxy"
            for c in created["spec"].get("initContainers", []) + created["spec"]["containers"]
        )

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop()
            self.operator = None

    def logs(self) -> str:
        return self.operator.tail(80) if self.operator else ""


def sidecar_launch(cp: ControlPlane, workdir: Path) -> LaunchFactory:
    """Run the real sidecar for an injected Pod, as its container would run in a cluster."""

    def launch(slot: PodSlot) -> Launch:
        spec = slot.pod["spec"]
        container = next(
            c
            for c in spec.get("initContainers", []) + spec["containers"]
            if c["name"] == "sluice-proxy"
        )
        env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        env[PodEnv.POD_UID] = slot.pod["metadata"]["uid"]
        env[PodEnv.NAMESPACE] = slot.namespace
        volumes = {v["name"]: v for v in spec["volumes"]}
        pod_dir = workdir / slot.name
        pod_dir.mkdir(parents=True, exist_ok=True)
        # The kubelet mounts the admin token Secret and the ConfigMap: read them the same way.
        secret_name = volumes["sluice-admin-token"]["secret"]["secretName"]
        secret = cp.request("GET", f"/api/v1/namespaces/{slot.namespace}/secrets/{secret_name}")
        (pod_dir / "token").write_bytes(base64.b64decode(secret["data"]["token"]))
        argv = [
            sys.executable,
            "-m",
            "sluice_sidecar",
            "--host",
            slot.ip,
            "--admin-host",
            slot.ip,
            "--admin-token-file",
            str(pod_dir / "token"),
            "--no-watch",
        ]
        config_map = volumes["sluice-config"]["configMap"]["name"]
        try:
            data = cp.request("GET", f"/api/v1/namespaces/{slot.namespace}/configmaps/{config_map}")
            (pod_dir / "config.json").write_text(data["data"]["config.json"])
            argv += ["--config-file", str(pod_dir / "config.json")]
        except ApiError as error:
            if error.status != 404:
                raise
        # ... and the projected provider-key Secrets, as <secret>/<key> files.
        keys_dir = pod_dir / "providers"
        for source in volumes["sluice-provider-keys"].get("projected", {}).get("sources", []):
            ref = source["secret"]
            try:
                found = cp.request(
                    "GET", f"/api/v1/namespaces/{slot.namespace}/secrets/{ref['name']}"
                )
            except ApiError as error:
                if error.status == 404 and ref.get("optional"):
                    continue
                raise
            for item in ref.get("items", []):
                if item["key"] in (found.get("data") or {}):
                    path = keys_dir / item["path"]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(base64.b64decode(found["data"][item["key"]]))
        env.pop(PodEnv.ADMIN_TOKEN_FILE, None)
        env[PodEnv.SECRETS_DIR] = str(keys_dir)
        env[PodEnv.STATE_DIR] = str(pod_dir / "state")  # the pod's emptyDir
        admin_port = int(env[PodEnv.ADMIN_PORT])
        return Launch(argv=argv, env=env, ports=[admin_port])

    return launch


def sidecar_config(slot: PodSlot, token: str) -> dict[str, Any]:
    """GET /admin/config of a running sidecar."""
    return sidecar_admin(slot, token, "/admin/config")


def sidecar_admin(slot: PodSlot, token: str, path: str) -> dict[str, Any]:
    """GET an admin path of a running sidecar."""
    port = next(
        p["containerPort"]
        for c in slot.pod["spec"].get("initContainers", []) + slot.pod["spec"]["containers"]
        if c["name"] == "sluice-proxy"
        for p in c["ports"]
        if p["name"] == ADMIN_PORT_NAME
    )
    request = urllib.request.Request(
        f"http://{slot.ip}:{port}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())
