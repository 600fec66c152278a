"""Operators of their own on a fresh control plane: one or more replicas, each scrapeable.

The session's ``sluice`` operator runs cluster-wide on the shared control plane, so tests that
count what an operator did (its metrics, which replica is active) start a ``ControlPlane`` of
their own. A replica is ``SluiceDeployment.start_operator`` with the extra settings this module
gives it through the environment the operator process inherits (metrics port, peering).
"""

from __future__ import annotations

import os
import signal
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from e2e.harness import net, rbac
from e2e.harness.binaries import Binaries
from e2e.harness.controlplane import ControlPlane
from e2e.harness.kubelet import FakeKubelet, IpAllocator
from e2e.harness.processes import wait_until
from e2e.sluice import OPERATOR_NAMESPACE, SluiceDeployment, sidecar_launch


@contextmanager
def _environ(extra: Mapping[str, str]) -> Iterator[None]:
    """Variables the next started process inherits (ManagedProcess passes os.environ on)."""
    saved = {name: os.environ.get(name) for name in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class Replica:
    deployment: SluiceDeployment
    metrics_port: int

    def scrape(self) -> dict[str, float]:
        """Every sample of its /metrics, keyed ``name{label="value",...}`` (sorted labels)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                samples[f"{s.name}{{{labels}}}"] = s.value
        return samples

    def kill(self) -> None:
        """SIGKILL: no cleanup handlers, no goodbye to its peers (a crashed node)."""
        assert self.deployment.operator is not None
        os.killpg(self.deployment.operator.pid, signal.SIGKILL)
        self.deployment.operator.popen.wait(10)

    def stop(self) -> None:
        self.deployment.stop_operator()


def fresh_control_plane(binaries: Binaries, workdir: Path) -> ControlPlane:
    return ControlPlane(binaries, workdir).start()


@contextmanager
def one_operator(
    binaries: Binaries, workdir: Path, extra: Mapping[str, str] | None = None
) -> Iterator[tuple[ControlPlane, Replica]]:
    """A fresh control plane with Sluice installed and one operator; its log tail printed."""
    cp = fresh_control_plane(binaries, workdir / "cp")
    try:
        replica = start_replica(install(cp, workdir), extra)
        try:
            yield cp, replica
        finally:
            print("---- operator log (tail) ----\n" + replica.deployment.logs())
            replica.stop()
    finally:
        cp.stop()


def install(cp: ControlPlane, workdir: Path) -> SluiceDeployment:
    """The CRDs, the least-privilege ServiceAccount and the webhook configuration."""

    def kubeconfig(name: str, **kwargs: object) -> Path:
        return rbac.service_account_kubeconfig(
            cp.api, cp.server, cp.ca_file, workdir / "kubeconfigs", name, **kwargs
        )

    (workdir / "kubeconfigs").mkdir(parents=True, exist_ok=True)
    cp.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    return SluiceDeployment.install(cp, kubeconfig, workdir)


def start_replica(first: SluiceDeployment, extra: Mapping[str, str] | None = None) -> Replica:
    """An operator process with its own ports; ``first``'s webhook port when it is not in
    use yet (the webhook configuration points there), else a port of its own."""
    metrics_port = net.free_port()
    deployment = (
        first
        if first.operator is None
        else SluiceDeployment(first.cp, first.kubeconfig, first.workdir, net.free_port())
    )
    deployment.usage_port = deployment.usage_port or net.free_port()
    env = {"SLUICE_OPERATOR_METRICS_PORT": str(metrics_port), **(extra or {})}
    with _environ(env):
        deployment.start_operator()
    return Replica(deployment, metrics_port)


def app_kubelet(cp: ControlPlane, namespace: str, ips: IpAllocator, workdir: Path) -> FakeKubelet:
    """Namespace ``namespace`` made, and a started kubelet running its injected pods."""
    cp.kubectl("create", "namespace", namespace)
    wait_until(
        lambda: cp.api.exists(f"/api/v1/namespaces/{namespace}/serviceaccounts/default"),
        30,
        what=f"ServiceAccount {namespace}/default",
    )
    launch = sidecar_launch(cp, workdir)
    return FakeKubelet(
        cp.api, namespace, "sluice.dev/injected=true", launch, workdir / "pods", ips
    ).start()
