"""Per-pod sidecar settings and the pods the webhook leaves alone, on the real control plane:
annotations override the data port and the sidecar's resources, a bad value refuses the Pod
with a message naming it, a container's envFrom keeps its own base URLs, and hostNetwork Pods
are never injected."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from e2e.harness.controlplane import ControlPlane
from e2e.sluice import SluiceDeployment

pytestmark = pytest.mark.e2e


def labelled_pod(name: str, annotations: dict[str, str], **spec: Any) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": {"sluice.dev/inject": "true"},
                "annotations": annotations,
            },
            "spec": {"containers": [{"name": "app", "image": "registry.local/app:1"}], **spec},
        }
    )


def created(cp: ControlPlane, namespace: str, manifest: str) -> dict[str, Any]:
    name = yaml.safe_load(manifest)["metadata"]["name"]
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    return cp.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")


def test_annotations_set_the_port_and_resources_and_bad_values_refuse_the_pod(
    sluice: SluiceDeployment, control_plane: ControlPlane, namespace: str
) -> None:
    tuned = created(
        control_plane,
        namespace,
        labelled_pod(
            "tuned",
            {"sluice.dev/data-port": "18000", "sluice.dev/proxy-memory-limit": "512Mi"},
        ),
    )
    (sidecar,) = [c for c in tuned["spec"]["initContainers"] if c["name"] == "sluice-proxy"]
    assert {p["containerPort"] for p in sidecar["ports"]} >= {18000}
    assert sidecar["resources"]["limits"]["memory"] == "512Mi"
    env = {e["name"]: e.get("value") for e in tuned["spec"]["containers"][0]["env"]}
    assert env["OPENAI_BASE_URL"] == "http://127.0.0.1:18000/v1"

    refused = control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=labelled_pod("greedy", {"sluice.dev/proxy-cpu": "lots"}),
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert (
        "sluice.dev/proxy-cpu" in refused.stderr and "not a Kubernetes quantity" in refused.stderr
    )
    assert not control_plane.api.exists(f"/api/v1/namespaces/{namespace}/pods/greedy")

    # A base URL the app takes from a ConfigMap through envFrom is not shadowed by ours when
    # the pod says so; by default ours win (envFrom usually carries only the key).
    control_plane.kubectl(
        "create", "configmap", "llm-endpoints", "-n", namespace,
        "--from-literal=OPENAI_BASE_URL=https://llm.internal/v1",
    )  # fmt: skip
    from_config = {
        "name": "app",
        "image": "registry.local/app:1",
        "envFrom": [{"configMapRef": {"name": "llm-endpoints"}}],
    }
    own = created(
        control_plane, namespace,
        labelled_pod(
            "own-urls", {"sluice.dev/inject-base-urls": "except-env-from"}, containers=[from_config]
        ),
    )  # fmt: skip
    assert "env" not in own["spec"]["containers"][0]
    assert own["metadata"]["annotations"]["sluice.dev/base-urls-skipped"] == "app"
    assert any(c["name"] == "sluice-proxy" for c in own["spec"]["initContainers"])
    keyed = dict(from_config, envFrom=[{"secretRef": {"name": "openai-key", "optional": True}}])
    governed = created(
        control_plane, namespace, labelled_pod("key-from-secret", {}, containers=[keyed])
    )
    urls = {e["name"] for e in governed["spec"]["containers"][0]["env"]}
    assert {"OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"} <= urls

    host = created(control_plane, namespace, labelled_pod("node-agent", {}, hostNetwork=True))
    assert "initContainers" not in host["spec"]
    assert [c["name"] for c in host["spec"]["containers"]] == ["app"]
