"""Bursts of changes in a namespace cost one reconcile, and events that cannot change the plan
cost none (reconcile.py, handlers.py; on the in-memory fake, counting namespace reads)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import kopf
from aiohttp import web
from aiohttp.test_utils import TestServer

from sluice_operator import handlers
from sluice_operator.metrics import OperatorMetrics
from sluice_operator.pusher import Pusher
from sluice_operator.reconcile import Reconciler
from sluice_operator.settings import OperatorSettings
from tests.operator.fake_kube import NAMESPACE, OPENAI, deployment, pod, policy
from tests.operator.reconcile_kube import ReconcileKube


def studio() -> ReconcileKube:
    selector = {"matchLabels": {"app": "studio"}}
    return ReconcileKube(
        policies_=[policy("studio", {"selector": selector, "providers": [OPENAI]})],
        deployments_=[deployment("studio", {"app": "studio"})],
    )


def reconciler(kube: ReconcileKube, **settings: Any) -> Reconciler:
    operator_settings = OperatorSettings(**settings)
    return Reconciler(kube, Pusher(operator_settings), operator_settings)  # type: ignore[arg-type]


async def requests(reconciler: Reconciler, count: int, every_s: float) -> list[Any]:
    """``count`` reconcile requests for the namespace, one every ``every_s``."""
    calls = []
    for _ in range(count):
        calls.append(asyncio.create_task(reconciler.reconcile(NAMESPACE)))
        await asyncio.sleep(every_s)
    return await asyncio.gather(*calls)


async def test_a_burst_of_changes_gives_one_reconcile() -> None:
    kube = studio()
    results = await requests(reconciler(kube, reconcile_debounce_s=0.2), 20, 0.002)
    assert kube.reads == 1
    assert sum(r is not None for r in results) == 1  # the others were folded into it


async def test_without_the_debounce_each_spaced_change_is_a_reconcile() -> None:
    kube = studio()
    await requests(reconciler(kube, reconcile_debounce_s=0), 5, 0.002)
    assert kube.reads == 5


async def test_a_steady_stream_of_changes_still_reconciles_within_the_bound() -> None:
    kube = studio()
    during: list[int] = []
    debounced = reconciler(kube, reconcile_debounce_s=0.2, reconcile_debounce_max_s=0.05)
    calls = []
    for _ in range(30):  # never a pause as long as the quiet window
        calls.append(asyncio.create_task(debounced.reconcile(NAMESPACE)))
        await asyncio.sleep(0.01)
        during.append(kube.reads)
    await asyncio.gather(*calls)
    assert during[-1] >= 2  # runs happened while the stream went on
    assert kube.reads < 30


def memo(kube: ReconcileKube, pusher: Pusher | None = None, **settings: Any) -> kopf.Memo:
    operator_settings = OperatorSettings(reconcile_debounce_s=0, **settings)
    metrics = OperatorMetrics()
    found = kopf.Memo()
    found.kube, found.metrics = kube, metrics
    pusher = pusher or Pusher(operator_settings, metrics)
    found.reconciler = Reconciler(kube, pusher, operator_settings)  # type: ignore[arg-type]
    return found


def ignored(found: kopf.Memo, kind: str) -> float | None:
    return found.metrics.registry.get_sample_value(
        "sluice_operator_events_ignored_total", {"kind": kind}
    )


async def deployment_event(found: kopf.Memo, body: dict[str, Any], kind: str = "MODIFIED") -> None:
    await handlers.deployment_event(
        event={"type": kind, "object": body},
        body=kopf.Body(body),
        namespace=NAMESPACE,
        memo=found,
    )


async def test_status_only_deployment_changes_are_not_reconciled() -> None:
    kube = studio()
    found = memo(kube)
    body = copy.deepcopy(kube.deployments_[0])
    body["metadata"]["generation"] = 1
    for ready in range(5):  # a rollout: the controller updates the status again and again
        body["status"] = {"replicas": 5, "readyReplicas": ready}
        await deployment_event(found, copy.deepcopy(body))
    assert kube.reads == 1
    assert ignored(found, "Deployment") == 4


async def test_a_deployments_template_or_annotation_change_is_reconciled() -> None:
    kube = studio()
    found = memo(kube)
    body = copy.deepcopy(kube.deployments_[0])
    body["metadata"]["generation"] = 1
    await deployment_event(found, copy.deepcopy(body))
    body["metadata"]["generation"] = 2  # the pod template changed
    await deployment_event(found, copy.deepcopy(body))
    body["metadata"]["annotations"]["team"] = "b"  # annotations carry the opt-in gesture
    await deployment_event(found, copy.deepcopy(body))
    assert kube.reads == 3
    await deployment_event(found, copy.deepcopy(body), "DELETED")
    await deployment_event(found, copy.deepcopy(body))  # created again with the same UID
    assert kube.reads == 4


class HeldSidecar:
    """A sidecar's admin API whose ``PUT /admin/config`` is held until released."""

    def __init__(self) -> None:
        self.arrived, self.release = asyncio.Event(), asyncio.Event()
        app = web.Application()
        app.router.add_put("/admin/config", self._put)
        self.server = TestServer(app, host="127.0.0.1")

    async def _put(self, request: web.Request) -> web.Response:
        self.arrived.set()
        await self.release.wait()
        return web.json_response({"version": "pushed"})


async def pod_event(found: kopf.Memo, body: dict[str, Any], kind: str) -> None:
    await handlers.pod_event(
        event={"type": kind, "object": body}, body=kopf.Body(body), namespace=NAMESPACE, memo=found
    )


async def test_events_of_a_pod_while_it_is_being_pushed_ask_for_no_reconcile() -> None:
    sidecar = HeldSidecar()
    await sidecar.server.start_server()
    kube = studio()
    kube.pods_ = [pod("a", "studio")]
    where = {"admin_host_override": "127.0.0.1", "admin_port": sidecar.server.port}
    pusher = Pusher(OperatorSettings(**where))
    await pusher.start()
    try:
        found = memo(kube, pusher, **where)
        first = asyncio.create_task(pod_event(found, copy.deepcopy(kube.pods_[0]), "ADDED"))
        await sidecar.arrived.wait()  # the run is pushing to the pod now
        # e.g. the last change's annotation, delivered late: the run covers the pod already
        again = asyncio.create_task(pod_event(found, copy.deepcopy(kube.pods_[0]), "MODIFIED"))
        await asyncio.wait_for(asyncio.shield(again), 1)
        sidecar.release.set()
        await first
    finally:
        sidecar.release.set()
        await pusher.close()
        await sidecar.server.close()
    assert kube.reads == 1
    assert ignored(found, "Pod") == 1
