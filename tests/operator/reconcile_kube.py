"""The in-memory reads of ``fake_kube`` plus the writes a reconcile makes (ConfigMaps, the admin
token, pod annotations, policy status), so a whole ``Reconciler.reconcile`` runs against it.
Each namespace read is counted: how many reconciles ran is what the debounce tests assert."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.operator.fake_kube import FakeKube
from tests.support.sidecar import ADMIN_TOKEN


@dataclass
class ReconcileKube(FakeKube):
    reads: int = 0
    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    annotated: dict[str, dict[str, str]] = field(default_factory=dict)

    async def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        self.reads += 1  # read_namespace starts here: one per reconcile that ran
        return await super().namespace_labels(namespace)

    async def apply_config_map(
        self, namespace: str, name: str, data: dict[str, str], **_: Any
    ) -> None:
        self.config_maps[name] = data

    async def admin_token(self, namespace: str, name: str) -> str:
        return ADMIN_TOKEN  # what tests.support.sidecar's sidecars accept

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        self.annotated.setdefault(name, {}).update(annotations)

    async def patch_policy_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        (body,) = [p for p in self.policies_ if p["metadata"]["name"] == name]
        body["status"] = status

    async def patch_deployment_template(self, namespace: str, name: str, patch: Any) -> None:
        pass
