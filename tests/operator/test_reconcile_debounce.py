"""Bursts of changes in a namespace cost one reconcile, and events that cannot change the plan
cost none (reconcile.py, handlers.py; on the in-memory fake, counting namespace reads)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import kopf

from sluice_operator import handlers
from sluice_operator.metrics import OperatorMetrics
from sluice_operator.pusher import Pusher
from sluice_operator.reconcile import Reconciler
from sluice_operator.settings import OperatorSettings
from tests.operator.fake_kube import NAMESPACE, OPENAI, deployment, policy
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


def memo(kube: ReconcileKube) -> kopf.Memo:
    settings = OperatorSettings(reconcile_debounce_s=0)
    metrics = OperatorMetrics()
    found = kopf.Memo()
    found.kube, found.metrics = kube, metrics
    found.reconciler = Reconciler(kube, Pusher(settings, metrics), settings)  # type: ignore[arg-type]
    return found


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
    ignored = found.metrics.registry.get_sample_value(
        "sluice_operator_events_ignored_total", {"kind": "Deployment"}
    )
    assert ignored == 4


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
