"""Budget aggregation: sidecars' spend -> LlmBudget.status -> back to every sidecar.

On a timer, for each LlmBudget of a namespace: read ``GET /admin/usage`` from every ready
sidecar of the workloads it selects, fold the per-pod counters into the status
(``spend.BudgetSpend``), compute utilization and state, post an Event when the state changes,
and push each sidecar what the other replicas spent (``PUT /admin/budgets/external``), so a
hard limit holds across replicas without Redis. Final reports of stopping sidecars arrive
through ``report_final`` (the usage server).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

from sluice_operator.injection import INJECTED_LABEL, WORKLOAD_LABEL
from sluice_operator.kube import Body, Kube
from sluice_operator.pusher import Pusher, PushTarget
from sluice_operator.reconcile import opted_in, pod_ready
from sluice_operator.selection import selector_matches
from sluice_operator.settings import OperatorSettings
from sluice_operator.spend import BudgetSpend, Spend, state_of, utilization
from sluice_sidecar.budget_periods import period_of

logger = logging.getLogger("sluice.operator.budgets")
EventPoster = Callable[[Body, str, str, str], None]  # body, type, reason, message


def identity(budget: Body) -> str:
    return f"{budget['metadata']['namespace']}/{budget['metadata']['name']}"


class BudgetAggregator:
    def __init__(
        self,
        kube: Kube,
        pusher: Pusher,
        settings: OperatorSettings,
        post_event: EventPoster = lambda body, kind, reason, message: None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.kube = kube
        self.pusher = pusher
        self.settings = settings
        self.post_event = post_event
        self.clock = clock
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._last: dict[str, float] = {}

    async def collect(self, namespace: str) -> None:
        """Collect once per interval per namespace, however many budgets' timers ask."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._last.get(namespace, -1e9) < self.settings.usage_interval_s / 2:
            return
        async with self._locks[namespace]:
            self._last[namespace] = loop.time()
            budgets = await self.kube.budgets(namespace)
            if not budgets:
                return
            token = await self.kube.read_admin_token(namespace, self.settings.admin_token_secret)
            workloads = await self._workloads(namespace)
            usage = await self._usage(token, [p for pods in workloads.values() for p in pods])
            pushes: dict[str, list[dict[str, Any]]] = defaultdict(list)
            targets: dict[str, PushTarget] = {}
            for budget in budgets:
                selector = budget["spec"].get("selector")
                pods = [
                    pod
                    for labels, pods_of in workloads.values_with_labels()
                    if selector_matches(selector, labels)
                    for pod in pods_of
                ]
                spend, period = self._fold_observed(budget, pods, usage)
                await self._write(budget, spend, period)
                for pod in pods:
                    uid = pod["metadata"]["uid"]
                    if uid in usage:
                        others = spend.others(uid)
                        pushes[uid].append(
                            {
                                "budget": identity(budget),
                                "periodStart": spend.period_start,
                                **others.as_json(),
                            }
                        )
                        targets[uid] = self._target(pod)
            if token is not None:
                await asyncio.gather(
                    *(
                        self.pusher.request_json(
                            "PUT",
                            targets[uid],
                            "/admin/budgets/external",
                            token,
                            orjson.dumps({"budgets": rows}),
                        )
                        for uid, rows in pushes.items()
                    )
                )

    async def report_final(self, namespace: str, document: dict[str, Any]) -> int:
        """Fold a stopping sidecar's last usage; returns how many budgets it touched."""
        uid = document.get("podUID")
        if not uid:
            return 0
        rows = {row.get("budget"): row for row in document.get("budgets") or []}
        touched = 0
        async with self._locks[namespace]:
            for budget in await self.kube.budgets(namespace):
                row = rows.get(identity(budget))
                if row is None:
                    continue
                period = period_of(budget["spec"].get("period", "monthly"), self.clock())
                spend = BudgetSpend.from_status(
                    budget.get("status") or {}, period.start.isoformat()
                )
                if row.get("periodStart") == spend.period_start:
                    spend.retire(uid, Spend.from_json(row))
                    await self._write(budget, spend, period)
                    touched += 1
        logger.info("final usage of pod %s folded into %d budget(s)", uid, touched)
        return touched

    # -- helpers -----------------------------------------------------------------------------
    async def _workloads(self, namespace: str) -> _Workloads:
        labels_of: dict[str, dict[str, str]] = {}
        namespace_labels = await self.kube.namespace_labels(namespace) or {}
        for deployment in await self.kube.deployments(namespace):
            if opted_in(deployment, namespace_labels):
                template = deployment["spec"]["template"].get("metadata") or {}
                labels_of[deployment["metadata"]["name"]] = template.get("labels") or {}
        pods = await self.kube.pods(namespace, f"{INJECTED_LABEL}=true")
        result = _Workloads()
        for pod in pods:
            workload = (pod["metadata"].get("labels") or {}).get(WORKLOAD_LABEL)
            labels = labels_of.get(workload or "", pod["metadata"].get("labels") or {})
            result.add(workload or "", labels, pod)
        return result

    def _target(self, pod: Body) -> PushTarget:
        host = self.settings.admin_host_override or pod["status"]["podIP"]
        return PushTarget(pod["metadata"]["name"], host, self.settings.admin_port)

    async def _usage(self, token: str | None, pods: list[Body]) -> dict[str, dict[str, Any]]:
        """Pod UID -> {budget identity -> usage row}, for ready pods that answered."""
        if token is None:
            return {}
        ready = [p for p in pods if pod_ready(p)]
        answers = await asyncio.gather(
            *(
                self.pusher.request_json("GET", self._target(p), "/admin/usage", token)
                for p in ready
            )
        )
        return {
            pod["metadata"]["uid"]: {row["budget"]: row for row in answer.get("budgets") or []}
            for pod, answer in zip(ready, answers, strict=True)
            if isinstance(answer, dict)
        }

    def _fold_observed(
        self, budget: Body, pods: list[Body], usage: dict[str, dict[str, Any]]
    ) -> tuple[BudgetSpend, Any]:
        period = period_of(budget["spec"].get("period", "monthly"), self.clock())
        spend = BudgetSpend.from_status(budget.get("status") or {}, period.start.isoformat())
        live = {p["metadata"]["uid"] for p in pods if not p["metadata"].get("deletionTimestamp")}
        for uid, rows in usage.items():
            row = rows.get(identity(budget))
            if uid in live and row is not None and row.get("periodStart") == spend.period_start:
                spend.observe(uid, Spend.from_json(row))
        for uid in list(spend.pods):
            if uid not in live:
                spend.retire(uid)  # gone without a final report: keep what was last seen
        return spend, period

    async def _write(self, budget: Body, spend: BudgetSpend, period: Any) -> None:
        spec = budget.get("spec") or {}
        limits = spec.get("limits") or {}
        total = spend.total
        share = utilization(total, limits)
        state = state_of(share, spec.get("thresholds") or {})
        old = budget.get("status") or {}
        status = {
            "observedGeneration": budget["metadata"].get("generation"),
            "spentUSD": str(total.cost.quantize(Decimal("0.000001"))),
            "tokens": total.tokens,
            "limitUSD": str(limits["costUSD"]) if limits.get("costUSD") is not None else None,
            "utilization": f"{share:.0%}",
            "state": state,
            "periodStart": spend.period_start,
            "resetsAt": period.resets_at.isoformat() if period.resets_at else None,
            "ledger": spend.as_status(),
        }
        if old.get("periodStart") not in (None, spend.period_start):
            self.post_event(
                budget,
                "Normal",
                "PeriodReset",
                f"new {spec.get('period')} period from {spend.period_start}",
            )
        if old.get("state", "OK") != state:
            kind = "Normal" if state == "OK" else "Warning"
            self.post_event(
                budget,
                kind,
                f"Budget{state}",
                f"{identity(budget)} is at {share:.0%} of its limit "
                f"(spent ${status['spentUSD']}, {total.tokens} tokens): {state}",
            )
        if {k: old.get(k) for k in status} == status:
            return
        await self.kube.patch_budget_status(
            budget["metadata"]["namespace"],
            budget["metadata"]["name"],
            {**status, "ledger": _merge_patch(old.get("ledger") or {}, status["ledger"])},
        )
        budget["status"] = status


def _merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` as a JSON merge patch over ``old``: keys that left the maps become null."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict) and key != "retired":
            patch[key] = {**{k: None for k in before if k not in value}, **value}
        else:
            patch[key] = value
    return patch


class _Workloads:
    """Workload name -> (pod template labels, pods)."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[dict[str, str], list[Body]]] = {}

    def add(self, workload: str, labels: dict[str, str], pod: Body) -> None:
        self._items.setdefault(workload, (labels, []))[1].append(pod)

    def values(self) -> list[list[Body]]:
        return [pods for _, pods in self._items.values()]

    def values_with_labels(self) -> list[tuple[dict[str, str], list[Body]]]:
        return list(self._items.values())
