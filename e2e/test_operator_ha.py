"""Two operator replicas on the real control plane: kopf peering keeps one active; the active
one is SIGKILLed during a configuration rollout and the standby finishes it, with no push,
status or spend lost and nothing counted twice. Prints the failover figures."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from e2e.harness.binaries import Binaries
from e2e.harness.controlplane import ControlPlane
from e2e.harness.kubelet import IpAllocator
from e2e.harness.processes import wait_until
from e2e.operator_replicas import (
    Replica,
    app_kubelet,
    fresh_control_plane,
    install,
    start_replica,
)
from e2e.test_budgets import budget_status, call, manifests, own_spend
from e2e.workloads import admin_token, configmap_version, deployment, running_sidecars, versions

pytestmark = pytest.mark.e2e
NAMESPACE = "studio"
LIFETIME_S = 5  # a dead replica's peering record expires after this


def peering(priority: int, name: str) -> dict[str, str]:
    return {
        "SLUICE_OPERATOR_PEERING_NAME": "sluice",
        "SLUICE_OPERATOR_PEERING_PRIORITY": str(priority),
        "SLUICE_OPERATOR_PEERING_LIFETIME_S": str(LIFETIME_S),
        "POD_ID": name,
    }


@pytest.fixture(scope="module")
def cluster(
    k8s_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ControlPlane, list[Replica]]]:
    workdir = tmp_path_factory.mktemp("ha-cluster")
    cp = fresh_control_plane(k8s_binaries, workdir / "cp")
    replicas: list[Replica] = []
    try:
        first = install(cp, workdir)
        record = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering"}
        wait_until(
            lambda: cp.apply(yaml.safe_dump({**record, "metadata": {"name": "sluice"}})),
            30,
            what="the ClusterKopfPeering CRD",
        )
        replicas.append(start_replica(first, peering(200, "replica-a")))
        replicas.append(start_replica(first, peering(100, "replica-b")))
        yield cp, replicas
    finally:
        for replica in replicas:
            print(f"---- {replica.deployment.operator} log (tail) ----")
            print(replica.deployment.logs())
            replica.stop()
        cp.stop()


def counter(replica: Replica, key: str) -> float:
    return replica.scrape().get(key, 0.0)


PUSHES_OK = 'sluice_operator_pushes_total{result="ok"}'
RECONCILES = "sluice_operator_reconciles_total{"


def test_killing_the_active_replica_mid_rollout_loses_nothing(
    cluster: tuple[ControlPlane, list[Replica]],
    loopback_ips: IpAllocator,
    simulator: str,
    tmp_path: Path,
) -> None:
    cp, (active, standby) = cluster
    kubelet = app_kubelet(cp, NAMESPACE, loopback_ips, tmp_path)
    policy, budget = yaml.safe_load_all(manifests(simulator))
    budget["spec"]["limits"]["costUSD"] = 10  # far away: this test counts, it does not block
    cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump_all([policy, budget]))
    try:
        cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=deployment("studio", 3))
        slots = running_sidecars(kubelet, 3)
        token = admin_token(cp, NAMESPACE)
        wait_until(
            lambda: versions(kubelet, token) == {configmap_version(cp, NAMESPACE, "studio")},
            30,
            what="the sidecars to run the policy",
        )
        # Only the higher-priority replica works; the standby reconciled and pushed nothing.
        assert sum(v for k, v in active.scrape().items() if k.startswith(RECONCILES)) >= 1
        assert not any(v for k, v in standby.scrape().items() if k.startswith(RECONCILES))
        assert counter(standby, PUSHES_OK) == 0
        identity = f"{NAMESPACE}/daily"
        for slot in slots:
            call(slot)
        spent_before = sum((own_spend(s, token, identity) for s in slots), Decimal(0))
        wait_until(
            lambda: Decimal(budget_status(cp, NAMESPACE).get("spentUSD", "0")) == spent_before,
            30,
            what=f"the budget to count {spent_before}",
        )
        pushes_before = counter(active, PUSHES_OK)

        # A configuration rollout, and the active replica dies in its middle.
        old_version = configmap_version(cp, NAMESPACE, "studio")
        policy["spec"]["retry"] = {"maxAttempts": 2}
        cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(policy))
        active.kill()
        killed = time.monotonic()

        new = wait_until(
            lambda: (
                (v := configmap_version(cp, NAMESPACE, "studio")) != old_version
                and versions(kubelet, token) == {v}
                and v
            ),
            60,
            what="the standby to finish the rollout",
        )
        takeover_s = time.monotonic() - killed
        path = f"/apis/sluice.dev/v1alpha1/namespaces/{NAMESPACE}/llmpolicies/priced"
        status = wait_until(
            lambda: (
                (s := cp.request("GET", path).get("status") or {}).get("observedGeneration") == 2
                and s["sidecars"]["summary"] == "3/3"
                and s
            ),
            30,
            what="the policy status to observe the change",
        )
        assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
        pushes_after = counter(standby, PUSHES_OK)
        assert pushes_after >= 1 and new

        # Spend after the takeover is collected once, on top of what was there.
        call(slots[0])
        spent_after = sum((own_spend(s, token, identity) for s in slots), Decimal(0))
        assert spent_after > spent_before
        wait_until(
            lambda: Decimal(budget_status(cp, NAMESPACE).get("spentUSD", "0")) == spent_after,
            30,
            what=f"the budget to count {spent_after}",
        )
        assert counter(standby, 'sluice_operator_usage_collections_total{result="ok"}') >= 3
    finally:
        kubelet.stop()
    print(
        f"\nFAILOVER: takeover (kill -> every sidecar on the new configuration) "
        f"{takeover_s:.1f} s with a {LIFETIME_S} s peering lifetime; pushes ok: active "
        f"{pushes_before:.0f} before, standby {pushes_after:.0f} after; spend "
        f"${spent_before} before, ${spent_after} after (budget status equal to the "
        f"sidecars' own sum both times)"
    )
