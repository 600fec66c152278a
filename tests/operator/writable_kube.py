"""The in-memory Kubernetes reads of ``fake_kube``, plus the token read and the status writes
the budget aggregator and the usage server make (kept, for the tests to assert on)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.operator.fake_kube import NAMESPACE, FakeKube

TOKEN = "admin-token"


@dataclass
class WritableKube(FakeKube):
    patches: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def read_admin_token(self, namespace: str, name: str) -> str | None:
        return TOKEN if namespace == NAMESPACE else None

    async def patch_budget_status(
        self,
        namespace: str,
        name: str,
        status: dict[str, Any],
        *,
        resource_version: str | None = None,
    ) -> None:
        self.patches.append((name, status))
