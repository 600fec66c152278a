"""The reconciler's report of opted-in pods without the sidecar: one Warning Event per pod,
not one per reconcile, and the ``missing`` gauge per policy (reconcile.py, on the fake)."""

from __future__ import annotations

from typing import Any

from sluice_operator.metrics import OperatorMetrics
from sluice_operator.pusher import Pusher
from sluice_operator.reconcile import Reconciler
from sluice_operator.settings import OperatorSettings
from tests.operator.fake_kube import OPENAI, policy
from tests.operator.reconcile_kube import ReconcileKube


def missed(name: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "labels": {"app": "studio", "sluice.dev/inject": "true"},
        },
        "spec": {"containers": [{"name": "app"}]},
        "status": {"phase": "Pending"},
    }


async def test_each_missed_pod_is_warned_about_once_and_counted_per_policy() -> None:
    kube = ReconcileKube(
        policies_=[
            policy(
                "studio", {"selector": {"matchLabels": {"app": "studio"}}, "providers": [OPENAI]}
            )
        ],
        pods_=[missed("a"), missed("b")],
    )
    settings = OperatorSettings()
    metrics = OperatorMetrics()
    warnings: list[tuple[str, str, str]] = []
    reconciler = Reconciler(
        kube,  # type: ignore[arg-type]
        Pusher(settings, metrics),
        settings,
        warn=lambda body, reason, _: warnings.append(
            (body["kind"], body["metadata"]["name"], reason)
        ),
    )
    for _ in range(3):
        await reconciler.reconcile("team-a")
    assert sorted(warnings) == [
        ("LlmPolicy", "studio", "SidecarMissing"),
        ("Pod", "a", "SidecarMissing"),
        ("Pod", "b", "SidecarMissing"),
    ]
    labels = {"namespace": "team-a", "policy": "studio", "state": "missing"}
    assert metrics.registry.get_sample_value("sluice_operator_sidecars", labels) == 2

    kube.pods_ = [missed("b")]  # a was rolled
    await reconciler.reconcile("team-a")
    assert metrics.registry.get_sample_value("sluice_operator_sidecars", labels) == 1
    assert len(warnings) == 3  # b was already reported
