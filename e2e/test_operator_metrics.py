"""The operator's /metrics on the real control plane: what a rollout, a policy and a budget
leave in it (reconciles, pushes, sidecars, admissions, usage collections, certificate)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from e2e.harness.binaries import Binaries
from e2e.harness.controlplane import ControlPlane
from e2e.harness.kubelet import IpAllocator
from e2e.harness.processes import wait_until
from e2e.operator_replicas import Replica, app_kubelet, one_operator
from e2e.workloads import (
    admin_token,
    configmap_version,
    deployment,
    policy,
    running_sidecars,
    versions,
)

pytestmark = pytest.mark.e2e
NAMESPACE = "metered"


@pytest.fixture(scope="module")
def cluster(
    k8s_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ControlPlane, Replica]]:
    with one_operator(k8s_binaries, tmp_path_factory.mktemp("metrics-cluster")) as cluster:
        yield cluster


def value(samples: dict[str, float], key: str) -> float:
    return samples.get(key, 0.0)


def test_operator_metrics_follow_a_rollout_a_policy_and_a_budget(
    cluster: tuple[ControlPlane, Replica], loopback_ips: IpAllocator, tmp_path: Path
) -> None:
    cp, replica = cluster
    kubelet = app_kubelet(cp, NAMESPACE, loopback_ips, tmp_path)
    try:
        cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=deployment("studio", 2))
        running_sidecars(kubelet, 2)
        token = admin_token(cp, NAMESPACE)
        before = wait_until(
            lambda: (
                (v := versions(kubelet, token)) == {configmap_version(cp, NAMESPACE, "studio")}
                and v
            ),
            30,
            what="both sidecars to run the defaults",
        )
        cp.kubectl(
            "apply",
            "-n",
            NAMESPACE,
            "-f",
            "-",
            input=policy("studio", "studio", retry={"maxAttempts": 2}),
        )
        wait_until(
            lambda: (v := versions(kubelet, token)) != before and len(v) == 1,
            30,
            what="both sidecars to run the policy",
        )
        budget = {
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "LlmBudget",
            "metadata": {"name": "daily"},
            "spec": {
                "selector": {"matchLabels": {"app": "studio"}},
                "period": "daily",
                "limits": {"costUSD": 5},
            },
        }
        cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(budget))
        sidecars = f'namespace="{NAMESPACE}",policy="studio"'

        def settled() -> dict[str, float] | None:
            samples = replica.scrape()
            wanted = [
                f'sluice_operator_sidecars{{{sidecars},state="synced"}}',
                'sluice_operator_usage_collections_total{result="ok"}',
            ]
            ok = value(samples, wanted[0]) == 2 and value(samples, wanted[1]) >= 2
            return samples if ok else None

        samples = wait_until(settled, 30, what="synced sidecars and usage collections")
    finally:
        kubelet.stop()
    assert samples[f'sluice_operator_sidecars{{{sidecars},state="desired"}}'] == 2
    assert value(samples, 'sluice_operator_admissions_total{result="injected"}') >= 2
    assert value(samples, "sluice_operator_admission_duration_seconds_count{}") >= 2
    # Two pods got the defaults when they became ready, then both the policy.
    assert value(samples, 'sluice_operator_pushes_total{result="ok"}') >= 4
    assert value(samples, 'sluice_operator_pushes_total{result="failed"}') == 0
    assert value(samples, "sluice_operator_push_duration_seconds_count{}") >= 4
    # A request that arrives during a run is folded into the next one (coalesced).
    for kind in ("LlmPolicy", "LlmBudget", "Pod"):
        runs = [
            f'sluice_operator_reconciles_total{{kind="{kind}",result="{r}"}}'
            for r in ("success", "coalesced")
        ]
        assert sum(value(samples, run) for run in runs) >= 1, kind
    assert value(samples, 'sluice_operator_reconciles_total{kind="Pod",result="error"}') == 0
    expiry = samples["sluice_operator_certificate_expiry_timestamp_seconds{}"]
    assert expiry > time.time() + 86400
