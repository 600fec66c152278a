"""Two operator replicas folding final usage reports into one budget at the same moment.

Each write carries the resourceVersion its plan was read at; the one another replica beat is
refused (409) and planned again from a fresh read, so neither pod's spend is lost."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import Any

from sluice_operator.aggregator import BudgetAggregator
from sluice_operator.kube import StatusConflict
from sluice_operator.pusher import Pusher
from sluice_operator.settings import OperatorSettings
from sluice_sidecar.contract.usage import FinalUsage
from tests.operator.fake_kube import NAMESPACE, budget
from tests.operator.writable_kube import WritableKube

NOW = dt.datetime(2026, 12, 15, 12, tzinfo=dt.UTC)
PERIOD = "2026-12-01T00:00:00+00:00"
IDENTITY = f"{NAMESPACE}/monthly"


def merged(into: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7386), as the API server applies it."""
    out = dict(into)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class ApiServerKube(WritableKube):
    """Status writes applied to the stored budget, with resourceVersion preconditions; reads
    yield to the loop, so two replicas can both read before either writes."""

    version: int = 1

    async def budgets(self, namespace: str) -> list[dict[str, Any]]:
        await asyncio.sleep(0)
        for body in self.budgets_:
            body["metadata"]["resourceVersion"] = str(self.version)
        return [merged({}, body) for body in self.budgets_]  # a copy, as a GET returns

    async def patch_budget_status(
        self,
        namespace: str,
        name: str,
        status: dict[str, Any],
        *,
        resource_version: str | None = None,
    ) -> None:
        await asyncio.sleep(0)
        if resource_version is not None and resource_version != str(self.version):
            raise StatusConflict(f"llmbudget {namespace}/{name} changed since it was read")
        [stored] = [b for b in self.budgets_ if b["metadata"]["name"] == name]
        stored["status"] = merged(stored.get("status") or {}, status)
        self.version += 1
        self.patches.append((name, status))


def final_report(uid: str, spent: str) -> FinalUsage:
    return FinalUsage.model_validate(
        {
            "podUID": uid,
            "namespace": NAMESPACE,
            "budgets": [
                {"budget": IDENTITY, "periodStart": PERIOD, "spentUSD": spent, "tokens": 10}
            ],
        }
    )


async def test_two_replicas_folding_final_reports_at_once_lose_neither() -> None:
    spec = {"selector": {"matchLabels": {"app": "studio"}}, "limits": {"costUSD": 10}}
    kube = ApiServerKube(budgets_=[budget("monthly", spec)])
    settings = OperatorSettings()
    replicas = [
        BudgetAggregator(kube, Pusher(settings), settings, clock=lambda: NOW)  # type: ignore[arg-type]
        for _ in range(2)
    ]
    folded = await asyncio.gather(
        replicas[0].report_final(NAMESPACE, final_report("pod-a", "1.5")),
        replicas[1].report_final(NAMESPACE, final_report("pod-b", "2.25")),
    )
    assert folded == [1, 1]
    status = kube.budgets_[0]["status"]
    assert (status["spentUSD"], status["tokens"]) == ("3.750000", 20)
    assert set(status["ledger"]["retiredPods"]) == {"pod-a", "pod-b"}
    assert len(kube.patches) == 2  # the write that lost was planned again, not added twice
