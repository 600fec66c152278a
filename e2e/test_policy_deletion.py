"""Deleting an LlmPolicy while the operator is polling its sidecars: the policy is gone once
that poll ends, not a minute later.

The policy's per-namespace timers (circuit changes, key reports) hold kopf's finalizer on it.
kopf stops a timer that is running when the policy is deleted, and if it did not exit at once,
checks it again only after ``settings.background.cancellation_polling`` (60 s by default) —
``kubectl delete`` hung for that minute. The sidecar here is a stand-in whose transitions log
is held unanswered while the deletion arrives.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.harness.binaries import Binaries
from e2e.harness.controlplane import ControlPlane
from e2e.harness.kubelet import FakeKubelet, IpAllocator
from e2e.harness.processes import wait_until
from e2e.harness.standins import StandIns
from e2e.operator_replicas import Replica, one_operator
from e2e.workloads import deployment, policy

pytestmark = pytest.mark.e2e
NAMESPACE = "deleting"
POLICY = f"/apis/sluice.dev/v1alpha1/namespaces/{NAMESPACE}/llmpolicies/studio"
GONE_WITHIN_S = 15  # after the held poll ends: kopf's own re-check, a reconcile, the API


@pytest.fixture(scope="module")
def cluster(
    k8s_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ControlPlane, Replica]]:
    with one_operator(k8s_binaries, tmp_path_factory.mktemp("deletion-cluster")) as cluster:
        yield cluster


def test_a_policy_deleted_during_a_slow_poll_is_gone_once_the_poll_ends(
    cluster: tuple[ControlPlane, Replica], loopback_ips: IpAllocator, tmp_path: Path
) -> None:
    cp, replica = cluster
    cp.kubectl("create", "namespace", NAMESPACE)
    standins = StandIns(cp.api).start()
    kubelet = FakeKubelet(
        cp.api, NAMESPACE, "sluice.dev/injected=true", standins.launch, tmp_path, loopback_ips
    ).start()
    try:
        cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=deployment("studio", 1))
        cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=policy("studio", "studio"))
        wait_until(lambda: len(kubelet.slots()) == 1, 60, what="the pod to run")
        wait_until(
            lambda: "finalizers" in cp.api.get(POLICY)["metadata"], 30, what="kopf's finalizer"
        )
        standins.hold_transitions()
        # The policy's timer polls the sidecar every second: the next poll is held.
        assert standins.transitions_held.wait(30), "no poll of the sidecar's transitions"
        cp.kubectl("delete", "llmpolicy", "studio", "-n", NAMESPACE, "--wait=false")
        wait_until(
            lambda: "is still exiting" in replica.deployment.logs(),
            30,
            what="the operator to find the policy's timer still running",
        )
        standins.release_transitions()
        released = time.monotonic()
        wait_until(lambda: not cp.api.exists(POLICY), 90, what="the policy to be gone")
        assert time.monotonic() - released < GONE_WITHIN_S
    finally:
        standins.release_transitions()
        kubelet.stop()
        standins.stop()
