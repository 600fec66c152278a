"""Smoke tests of the local control plane harness: what later operator tests rely on works
against the real API server (CRD validation, watches, controllers, admission webhooks,
RBAC, helm, and the fake kubelet running a process at a Pod IP)."""

from __future__ import annotations

import base64
import ipaddress
import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from e2e.harness import processes
from e2e.harness.binaries import pinned_versions
from e2e.harness.client import ApiError, JsonObject
from e2e.harness.controlplane import ControlPlane
from e2e.harness.https import BackgroundHttpsServer
from e2e.harness.kubelet import KubeletFactory, Launch, PodSlot
from e2e.harness.rbac import ServiceAccountFactory

pytestmark = pytest.mark.e2e

CHART = Path(__file__).parent / "fixtures" / "minimal-chart"
GROUP = "e2e.sluice.dev"

WIDGET_CRD = f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{GROUP}
spec:
  group: {GROUP}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              x-kubernetes-validations:
                - rule: "!has(self.max) || self.size <= self.max"
                  message: size must not exceed max
              properties:
                size: {{type: integer, minimum: 1}}
                max: {{type: integer}}
                mode: {{type: string, enum: [fast, safe]}}
"""


def _pod(name: str, labels: dict[str, str] | None = None, port: int | None = None) -> JsonObject:
    container: JsonObject = {"name": "main", "image": "example.invalid/none:0"}
    if port is not None:
        container["ports"] = [{"containerPort": port}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [container]},
    }


def test_server_reports_pinned_version(control_plane: ControlPlane) -> None:
    assert control_plane.version()["gitVersion"] == pinned_versions()["KUBE"]
    out = control_plane.kubectl("get", "--raw", "/readyz").stdout
    assert out.strip() == "ok"


def test_crd_is_served_and_validated(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.apply(WIDGET_CRD)
    api = control_plane.api
    path = f"/apis/{GROUP}/v1/namespaces/{namespace}/widgets"

    def widget(name: str, **spec: Any) -> JsonObject:
        return {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": spec,
        }

    def served() -> bool:
        try:
            api.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    processes.wait_until(served, 30, what="the Widget CRD to be served")
    created = api.create(path, widget("ok", size=2, max=3, mode="fast"))
    assert created["spec"] == {"size": 2, "max": 3, "mode": "fast"}

    for bad, expected in [
        (widget("small", size=0), "should be greater than or equal to 1"),
        (widget("mode", size=1, mode="reckless"), "Unsupported value"),
        (widget("cel", size=5, max=3), "size must not exceed max"),
    ]:
        with pytest.raises(ApiError) as err:
            api.create(path, bad)
        assert err.value.status == 422
        assert expected in str(err.value), str(err.value)


def test_watch_sees_create_update_delete(control_plane: ControlPlane, namespace: str) -> None:
    api = control_plane.api
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    start = api.get(path)["metadata"]["resourceVersion"]
    api.create(path, {"metadata": {"name": "watched"}, "data": {"v": "1"}})
    api.patch(f"{path}/watched", {"data": {"v": "2"}})
    api.delete(f"{path}/watched")

    seen: list[tuple[str, str | None]] = []
    for event in api.watch(path, start, timeout_seconds=10, fieldSelector="metadata.name=watched"):
        if event["type"] == "BOOKMARK":
            continue
        seen.append((event["type"], (event["object"].get("data") or {}).get("v")))
        if event["type"] == "DELETED":
            break
    assert seen == [("ADDED", "1"), ("MODIFIED", "2"), ("DELETED", "2")]


def test_deployment_makes_replicaset_and_pods(control_plane: ControlPlane, namespace: str) -> None:
    api = control_plane.api
    labels = {"app": "smoke"}
    api.create(
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        {
            "metadata": {"name": "smoke"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": _pod("x")["spec"]},
            },
        },
    )

    def pods_owned_by_replicaset() -> list[JsonObject] | None:
        sets = api.get(f"/apis/apps/v1/namespaces/{namespace}/replicasets")["items"]
        owned = [
            rs
            for rs in sets
            if any(o["kind"] == "Deployment" for o in rs["metadata"].get("ownerReferences", []))
        ]
        if not owned:
            return None
        pods = api.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector="app=smoke")["items"]
        rs_uid = owned[0]["metadata"]["uid"]
        mine = [
            p for p in pods if any(o["uid"] == rs_uid for o in p["metadata"]["ownerReferences"])
        ]
        return mine if len(mine) == 2 else None

    pods = processes.wait_until(pods_owned_by_replicaset, 60, what="ReplicaSet and 2 Pods")
    assert {p["status"]["phase"] for p in pods} == {"Pending"}  # no scheduler, no kubelet


def _admission_app(calls: list[JsonObject]) -> web.Application:
    async def mutate(request: web.Request) -> web.Response:
        review = await request.json()
        calls.append(review)
        patch = [{"op": "add", "path": "/metadata/labels/sluice-e2e~1mutated", "value": "yes"}]
        return web.json_response(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {
                    "uid": review["request"]["uid"],
                    "allowed": True,
                    "patchType": "JSONPatch",
                    "patch": base64.b64encode(json.dumps(patch).encode()).decode(),
                },
            }
        )

    app = web.Application()
    app.router.add_post("/mutate", mutate)
    return app


def test_mutating_webhook_patch_lands_in_pod(control_plane: ControlPlane, namespace: str) -> None:
    api = control_plane.api
    calls: list[JsonObject] = []
    keypair = control_plane.ca.issue("webhook")
    config_path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
    name = f"smoke-{namespace}"
    with BackgroundHttpsServer(_admission_app(calls), keypair) as server:
        api.create(
            config_path,
            {
                "metadata": {"name": name},
                "webhooks": [
                    {
                        "name": f"mutate.{GROUP}",
                        "clientConfig": {
                            "url": f"{server.url}/mutate",
                            "caBundle": base64.b64encode(control_plane.ca.cert_pem).decode(),
                        },
                        "rules": [
                            {
                                "apiGroups": [""],
                                "apiVersions": ["v1"],
                                "operations": ["CREATE"],
                                "resources": ["pods"],
                            }
                        ],
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": namespace}
                        },
                        "sideEffects": "None",
                        "admissionReviewVersions": ["v1"],
                        "failurePolicy": "Ignore",
                        "timeoutSeconds": 5,
                    }
                ],
            },
        )
        try:
            pods = f"/api/v1/namespaces/{namespace}/pods"

            def mutated_on_dry_run() -> bool:
                pod = api.create(pods, _pod("probe", {"app": "probe"}), dryRun="All")
                return pod["metadata"]["labels"].get("sluice-e2e/mutated") == "yes"

            processes.wait_until(mutated_on_dry_run, 30, what="the webhook to be active")
            api.create(pods, _pod("mutated", {"app": "web"}))
            stored = api.get(f"{pods}/mutated")
            assert stored["metadata"]["labels"] == {"app": "web", "sluice-e2e/mutated": "yes"}
            assert calls[-1]["request"]["namespace"] == namespace
        finally:
            api.delete(f"{config_path}/{name}")


def test_restricted_service_account_is_forbidden_beyond_its_role(
    control_plane: ControlPlane,
    namespace: str,
    service_account_kubeconfig: ServiceAccountFactory,
) -> None:
    kubeconfig = service_account_kubeconfig(
        "reader",
        namespace=namespace,
        rules=[{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        bind_in_namespace=namespace,
    )
    allowed = control_plane.kubectl("get", "configmaps", "-n", namespace, kubeconfig=kubeconfig)
    assert allowed.returncode == 0
    denied = control_plane.kubectl(
        "get", "secrets", "-n", namespace, kubeconfig=kubeconfig, check=False
    )
    assert denied.returncode != 0 and "Forbidden" in denied.stderr
    other = control_plane.kubectl(
        "get", "configmaps", "-n", "default", kubeconfig=kubeconfig, check=False
    )
    assert other.returncode != 0 and "Forbidden" in other.stderr

    token = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"]
    with pytest.raises(ApiError) as err:
        control_plane.client(token).get(f"/api/v1/namespaces/{namespace}/secrets")
    assert err.value.status == 403


def test_helm_lints_templates_and_installs_minimal_chart(
    control_plane: ControlPlane, helm: Path, namespace: str, tmp_path: Path
) -> None:
    env = {
        "HOME": str(tmp_path),
        "HELM_CACHE_HOME": str(tmp_path / "cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "config"),
        "HELM_DATA_HOME": str(tmp_path / "data"),
        "KUBECONFIG": str(control_plane.admin_kubeconfig),
        "PATH": "/usr/bin:/bin",
    }

    def run(*args: str) -> str:
        result = subprocess.run(
            [str(helm), *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert pinned_versions()["HELM"] in run("version", "--short")
    assert "1 chart(s) linted, 0 chart(s) failed" in run("lint", str(CHART))
    rendered = list(yaml.safe_load_all(run("template", "demo", str(CHART))))
    assert [d["kind"] for d in rendered if d] == ["ConfigMap"]
    assert rendered[0]["data"]["greeting"] == "hello"

    # Against the real server: kubeVersion is checked and .Capabilities is the server's.
    run("install", "demo", str(CHART), "--namespace", namespace, "--set", "greeting=hi")
    cm = control_plane.api.get(f"/api/v1/namespaces/{namespace}/configmaps/demo-minimal")
    assert cm["data"] == {"greeting": "hi", "kubeVersion": pinned_versions()["KUBE"]}


def test_fake_kubelet_runs_pod_process_on_loopback_ip(
    control_plane: ControlPlane,
    namespace: str,
    fake_kubelet: KubeletFactory,
    tmp_path: Path,
) -> None:
    (tmp_path / "hello.txt").write_text("hello from the pod\n")

    def launch(slot: PodSlot) -> Launch:
        argv = [sys.executable, "-m", "http.server", "--bind", slot.ip, "8080"]
        return Launch(argv, cwd=tmp_path)

    kubelet = fake_kubelet(namespace, "app=web", launch)
    api = control_plane.api
    pods = f"/api/v1/namespaces/{namespace}/pods"
    for name in ("web-1", "web-2"):
        api.create(pods, _pod(name, {"app": "web"}, port=8080))
    api.create(pods, _pod("other", {"app": "other"}))

    ips = []
    for name in ("web-1", "web-2"):
        slot = kubelet.wait_for_pod(name)
        status = processes.wait_until(
            lambda n=name: _ready_status(api.get(f"{pods}/{n}")), 30, what=f"{name} Ready"
        )
        assert status["podIP"] == slot.ip and ipaddress.ip_address(slot.ip).is_loopback
        with urllib.request.urlopen(f"http://{slot.ip}:8080/hello.txt", timeout=5) as resp:
            assert resp.read() == b"hello from the pod\n"
        ips.append(slot.ip)
    assert len(set(ips)) == 2
    assert api.get(f"{pods}/other")["status"]["phase"] == "Pending"

    process = kubelet.process("web-1")
    assert process is not None
    api.delete(f"{pods}/web-1")
    processes.wait_until(lambda: not process.running(), 30, what="web-1's process to stop")
    assert "web-1" not in kubelet.slots()
    assert kubelet.errors == []


def _ready_status(pod: JsonObject) -> JsonObject | None:
    status: JsonObject = pod.get("status", {})
    ready = any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
    )
    return status if status.get("phase") == "Running" and ready else None
