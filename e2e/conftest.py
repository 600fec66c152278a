"""Fixtures for tests against a real local control plane (see docs/testing.md).

Session-scoped: ``k8s_binaries``, ``control_plane``, ``helm``, ``service_account_kubeconfig``,
``loopback_ips``, ``images``. Per module: ``simulator``, ``helm_cluster``. Per test:
``namespace``, ``fake_kubelet``. Tests that need a
program that ``e2e/k8s/build`` has not built FAIL with the reason it recorded (a build that
failed must never look like a green run). When a test that used the control plane fails, the
tail of every component's log is added to its report.
"""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from e2e.harness import net, processes, rbac
from e2e.harness.binaries import Binaries, BinariesUnavailable, find_binaries
from e2e.harness.client import ApiError, JsonObject
from e2e.harness.controlplane import ControlPlane
from e2e.harness.helm_cluster import HelmCluster
from e2e.harness.kubelet import FakeKubelet, IpAllocator, KubeletFactory, LaunchFactory
from e2e.harness.processes import wait_until
from e2e.harness.rbac import ServiceAccountFactory
from e2e.harness.services import ServiceProxy
from e2e.image_fixtures import images
from e2e.sluice import SluiceDeployment

__all__ = ["images"]

CONTROL_PLANE_KEY = pytest.StashKey[ControlPlane]()
KUBELETS_KEY = pytest.StashKey[list[FakeKubelet]]()


@pytest.fixture(scope="session")
def k8s_binaries() -> Binaries:
    """The built etcd, kube-apiserver, kube-controller-manager and kubectl, or a failure."""
    try:
        return find_binaries("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
    except BinariesUnavailable as exc:
        pytest.fail(f"control plane binaries unavailable: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def helm(k8s_binaries: Binaries) -> Path:
    """Path of the built helm, or a failure with the reason it is missing."""
    try:
        k8s_binaries.require("helm")
    except BinariesUnavailable as exc:
        pytest.fail(f"helm unavailable: {exc}", pytrace=False)
    return k8s_binaries.helm


@pytest.fixture(scope="session")
def control_plane(
    k8s_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ControlPlane]:
    """A started etcd + kube-apiserver + kube-controller-manager for the whole session."""
    processes.install_cleanup()
    cp = ControlPlane(k8s_binaries, tmp_path_factory.mktemp("control-plane"))
    request.config.stash[CONTROL_PLANE_KEY] = cp
    cp.start()
    try:
        yield cp
        cp.check_watch_progress()
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def service_account_kubeconfig(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> ServiceAccountFactory:
    """Factory: ``(name, *, namespace="default", cluster_role=None, rules=None,
    bind_in_namespace=None) -> Path`` of a kubeconfig for a ServiceAccount bound to one
    ClusterRole (existing, or made from ``rules``), cluster-wide or in one namespace."""
    directory = tmp_path_factory.mktemp("kubeconfigs")

    def make(
        name: str,
        *,
        namespace: str = "default",
        cluster_role: str | None = None,
        rules: Sequence[JsonObject] | None = None,
        bind_in_namespace: str | None = None,
    ) -> Path:
        return rbac.service_account_kubeconfig(
            control_plane.api,
            control_plane.server,
            control_plane.ca_file,
            directory,
            name,
            namespace=namespace,
            cluster_role=cluster_role,
            rules=rules,
            bind_in_namespace=bind_in_namespace,
        )

    return make


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test (with its default ServiceAccount), deleted after."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{secrets.token_hex(3)}"
    control_plane.api.create("/api/v1/namespaces", {"metadata": {"name": name}})
    # Pods are admitted only once the controller-manager has made the default SA.
    processes.wait_until(
        lambda: control_plane.api.exists(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        30,
        what=f"ServiceAccount {name}/default",
    )
    yield name
    try:
        control_plane.api.delete(f"/api/v1/namespaces/{name}")
    except ApiError as exc:
        if exc.status != 404:
            raise


@pytest.fixture(scope="session")
def loopback_ips() -> IpAllocator:
    """Distinct loopback addresses (127.0.0.2 upward) for Pods run by fake kubelets."""
    return IpAllocator()


@pytest.fixture
def fake_kubelet(
    control_plane: ControlPlane,
    loopback_ips: IpAllocator,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[KubeletFactory]:
    """Factory: ``(namespace, label_selector, launch) -> FakeKubelet`` (started); every
    kubelet and its Pod processes stop when the test ends."""
    started: list[FakeKubelet] = []
    request.node.stash[KUBELETS_KEY] = started
    log_dir = tmp_path_factory.mktemp("pods")

    def make(namespace: str, selector: str, launch: LaunchFactory) -> FakeKubelet:
        kubelet = FakeKubelet(control_plane.api, namespace, selector, launch, log_dir, loopback_ips)
        started.append(kubelet)
        return kubelet.start()

    yield make
    for kubelet in reversed(started):
        kubelet.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach control-plane (and fake-kubelet Pod) log tails to failing e2e tests."""
    report = yield
    if report.failed and "control_plane" in getattr(item, "fixturenames", ()):
        cp = item.config.stash.get(CONTROL_PLANE_KEY, None)
        if cp is not None:
            for name, tail in cp.log_tails().items():
                report.sections.append((f"{name} log (tail)", tail or "(empty)"))
        for kubelet in item.stash.get(KUBELETS_KEY, []):
            if kubelet.errors:
                report.sections.append(("fake kubelet errors", "\n".join(kubelet.errors)))
            for slot in kubelet.slots().values():
                proc = kubelet.process(slot.name)
                if proc is not None:
                    report.sections.append((f"pod {slot.name} log (tail)", proc.tail(20)))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line saying how long the control plane took to start, when one ran."""
    cp = terminalreporter.config.stash.get(CONTROL_PLANE_KEY, None)
    if cp is not None and cp.start_seconds is not None:
        terminalreporter.write_line(
            f"control plane {cp.version_string}: ready in {cp.start_seconds:.1f}s "
            f"(logs: {cp.log_dir})"
        )


@pytest.fixture(scope="session")
def sluice(
    control_plane: ControlPlane,
    service_account_kubeconfig: ServiceAccountFactory,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SluiceDeployment]:
    """CRDs, the operator's least-privilege ServiceAccount, the webhook configuration, and the
    operator running (``e2e/sluice.py``); its log tail is printed at the end."""
    deployment = SluiceDeployment.install(
        control_plane, service_account_kubeconfig, tmp_path_factory.mktemp("sluice")
    )
    control_plane.kubectl("create", "namespace", "sluice-system", check=False)
    deployment.start_operator()
    try:
        yield deployment
    finally:
        print("---- operator log (tail) ----\n" + deployment.logs())
        deployment.stop_operator()


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The simulated provider as a process of its own (pods' sidecars reach it at 127.0.0.1);
    its OpenAI base URL."""
    port = net.free_port()
    proc = processes.ManagedProcess(
        "simulator",
        [sys.executable, "-m", "tests.support.simulator", "--port", str(port)],
        tmp_path_factory.mktemp("sim") / "simulator.log",
        cwd=Path(__file__).resolve().parents[1],
    )
    wait_until(lambda: net.accepts_connections("127.0.0.1", port), 20, what="the simulator")
    yield f"http://127.0.0.1:{port}/v1"
    proc.stop()


@pytest.fixture(scope="module")
def helm_cluster(
    k8s_binaries: Binaries,
    helm: Path,
    loopback_ips: IpAllocator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HelmCluster]:
    """A fresh control plane for one module that installs the chart with helm, with
    Services routed to Pod IPs and fake kubelets on demand (``e2e/harness/helm_cluster.py``)."""
    cp = ControlPlane(k8s_binaries, tmp_path_factory.mktemp("helm-control-plane")).start()
    cluster = HelmCluster(
        cp, ServiceProxy(cp.api).start(), helm, tmp_path_factory.mktemp("helm-pods"), loopback_ips
    )
    try:
        yield cluster
    finally:
        cluster.stop()
