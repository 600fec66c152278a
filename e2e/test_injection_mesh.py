"""Injection beside a service mesh's sidecar, on the real control plane.

The Pod template carries what Istio's injector writes in native-sidecar mode: a plain
``istio-init`` init container and ``istio-proxy`` as an init container with
``restartPolicy: Always`` declaring Istio's ports. Sluice's sidecar must come after it (native
sidecars start in order and stop in reverse: ours starts once the mesh runs and stops before
it), share no port with it, and its final usage report must still reach the operator when the
Pod goes.
"""

from __future__ import annotations

import pytest
import yaml

from e2e.harness.controlplane import ControlPlane
from e2e.harness.processes import wait_until
from e2e.sluice import SluiceDeployment, sidecar_admin, sidecar_launch
from e2e.test_budgets import call, manifests, own_spend
from e2e.workloads import admin_token, deployment, running_sidecars

pytestmark = pytest.mark.e2e

# Every port Istio's sidecar uses in a Pod (istio.io, "Ports used by Istio").
ISTIO_PORTS = (15000, 15001, 15004, 15006, 15008, 15009, 15020, 15021, 15053, 15090)


def meshed_deployment() -> str:
    body = yaml.safe_load(deployment("studio", 1))
    body["spec"]["template"]["spec"]["initContainers"] = [
        {"name": "istio-init", "image": "registry.local/proxyv2:1", "args": ["istio-iptables"]},
        {
            "name": "istio-proxy",
            "image": "registry.local/proxyv2:1",
            "restartPolicy": "Always",
            "ports": [{"containerPort": p, "protocol": "TCP"} for p in ISTIO_PORTS],
        },
    ]
    return yaml.safe_dump(body)


def test_beside_an_istio_style_sidecar_ours_goes_after_it_collides_with_nothing_and_reports(
    sluice: SluiceDeployment,
    control_plane: ControlPlane,
    namespace: str,
    fake_kubelet,
    simulator: str,
    tmp_path,
) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=manifests(simulator))
    kubelet = fake_kubelet(
        namespace, "sluice.dev/injected=true", sidecar_launch(control_plane, tmp_path)
    )
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=meshed_deployment())
    (slot,) = running_sidecars(kubelet, 1)

    spec = slot.pod["spec"]
    assert [c["name"] for c in spec["initContainers"]] == [
        "istio-init",
        "istio-proxy",
        "sluice-proxy",
    ]
    ports = {
        c["name"]: {p["containerPort"] for p in c.get("ports") or []}
        for c in spec["initContainers"] + spec["containers"]
    }
    ours = ports.pop("sluice-proxy")
    assert len(ours) == 2
    assert not ours & set(ISTIO_PORTS)
    assert not any(ours & theirs for theirs in ports.values())

    # Spend through the sidecar, then delete the Pod: the sidecar's final report is folded in.
    token = admin_token(control_plane, namespace)
    budget = f"{namespace}/daily"
    wait_until(
        lambda: any(
            r["budget"] == budget for r in sidecar_admin(slot, token, "/admin/usage")["budgets"]
        ),
        30,
        what="the sidecar to enforce the budget",
    )
    assert call(slot).choices[0].message.content
    spent = own_spend(slot, token, budget)
    assert spent > 0
    uid = slot.pod["metadata"]["uid"]
    control_plane.kubectl("scale", "-n", namespace, "deployment/studio", "--replicas=0")
    assert sluice.operator is not None
    wait_until(
        lambda: f"final usage of pod {uid} folded into 1 budget(s)" in sluice.operator.tail(400),
        30,
        what="the operator to receive the stopping sidecar's final usage report",
    )
