"""Where the operator pushes a configuration: the port the pod's injected sidecar declares
(``sluice-admin``), which may differ from the operator's setting, e.g. for pods injected
before ``sidecar.ports.admin`` changed. A real sidecar on loopback takes the push."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sluice_operator.pusher import Pusher, target_of
from sluice_operator.reconcile import Reconciler
from sluice_operator.settings import OperatorSettings
from tests.operator.fake_kube import deployment, pod
from tests.operator.reconcile_kube import ReconcileKube
from tests.support.sidecar import SidecarHandle, close_test_sidecar, start_test_sidecar


def injected(name: str, admin_port: int) -> dict[str, Any]:
    """An injected pod whose sidecar declares its admin port, as the injector writes it."""
    body = pod(name, "studio")
    body["spec"] = {
        "initContainers": [
            {
                "name": "sluice-proxy",
                "ports": [
                    {"name": "sluice-llm", "containerPort": 17100, "protocol": "TCP"},
                    {"name": "sluice-admin", "containerPort": admin_port, "protocol": "TCP"},
                ],
            }
        ],
        "containers": [{"name": "app"}],
    }
    return body


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_pods_declared_admin_port_wins_over_the_setting() -> None:
    settings = OperatorSettings(admin_port=17190)
    assert target_of(injected("a", 18190), settings).port == 18190
    assert target_of(pod("b", "studio"), settings).port == 17190  # declares none: the setting


@pytest.fixture
async def sidecar() -> AsyncIterator[SidecarHandle]:
    handle = await start_test_sidecar()
    yield handle
    await close_test_sidecar(handle)


async def test_a_pod_whose_admin_port_differs_from_the_setting_gets_the_configuration(
    sidecar: SidecarHandle,
) -> None:
    settings = OperatorSettings(
        admin_host_override="127.0.0.1", admin_port=closed_port(), push_attempts=1
    )
    kube = ReconcileKube(
        deployments_=[deployment("studio", {"app": "studio"})],
        pods_=[injected("a", sidecar.running.admin_port)],
    )
    pusher = Pusher(settings)
    await pusher.start()
    try:
        reconciler = Reconciler(kube, pusher, settings)  # type: ignore[arg-type]
        await reconciler.reconcile("team-a")
    finally:
        await pusher.close()
    status, config = await sidecar.admin("GET", "/admin/config")
    assert status == 200
    assert config["version"] == reconciler.wanted("team-a", "studio")
