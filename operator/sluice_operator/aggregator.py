"""Budget aggregation: sidecars' spend -> LlmBudget.status -> back to every sidecar.

On a timer, per namespace: read the budgets, the workloads and ``GET /admin/usage`` of every
ready sidecar (read), fold it all with ``budget_plan.plan_collection`` (plan, pure), then write
each changed status, post the Events of state changes and push each sidecar what the other
replicas spent (``PUT /admin/budgets/external``), so a hard limit holds across replicas without
Redis (apply). Final reports of stopping sidecars arrive through ``report_final`` (the usage
server).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import ValidationError

from sluice_operator.budget_plan import BudgetUpdate, UsageRows, plan_collection, plan_final_report
from sluice_operator.kube import Body, Kube, StatusConflict
from sluice_operator.pusher import Pusher, PushTarget, target_of
from sluice_operator.reading import read_workloads
from sluice_operator.resources import valid_budgets
from sluice_operator.rounds import NamespaceRounds
from sluice_operator.settings import OperatorSettings
from sluice_operator.workloads import pod_ready
from sluice_sidecar.contract.model import config_problems
from sluice_sidecar.contract.usage import ExternalUsage, FinalUsage, UsageReport

logger = logging.getLogger("sluice.operator.budgets")
# Each budget write is guarded by the resourceVersion it was planned from; a write another
# replica beat is planned again from a fresh read, this many times at most.
WRITE_ATTEMPTS = 5
EventPoster = Callable[[Body, str, str, str], None]  # body, type, reason, message


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
        self._rounds = NamespaceRounds(settings.usage_interval_s)

    async def collect(self, namespace: str) -> None:
        """Collect once per interval per namespace, however many budgets' timers ask."""
        async with self._rounds.round(namespace) as due:
            if not due:
                return
            budgets = valid_budgets(await self.kube.budgets(namespace))
            if not budgets:
                return
            token = await self.kube.read_admin_token(namespace, self.settings.admin_token_secret)
            namespace_labels = await self.kube.namespace_labels(namespace) or {}
            workloads = await read_workloads(self.kube, namespace, namespace_labels)
            usage = await self._usage(token, workloads.pods())
            plan = plan_collection(budgets, workloads, usage, self.clock())
            for attempt in range(1, WRITE_ATTEMPTS + 1):
                try:
                    for update in plan.updates:
                        await self._apply(update)
                    break
                except StatusConflict as conflict:
                    if attempt == WRITE_ATTEMPTS:
                        raise
                    logger.info("%s; planning the collection again", conflict)
                    budgets = valid_budgets(await self.kube.budgets(namespace))
                    plan = plan_collection(budgets, workloads, usage, self.clock())
            if token is not None:
                await asyncio.gather(
                    *(
                        self.pusher.request_json(
                            "PUT",
                            self._target(push.pod),
                            "/admin/budgets/external",
                            token,
                            orjson.dumps(ExternalUsage(budgets=push.rows).as_json()),
                        )
                        for push in plan.pushes
                    )
                )

    async def report_final(self, namespace: str, report: FinalUsage) -> int:
        """Fold a stopping sidecar's last usage; returns how many budgets it touched."""
        if not report.pod_uid:
            return 0
        async with self._rounds.lock(namespace):
            for attempt in range(1, WRITE_ATTEMPTS + 1):
                budgets = valid_budgets(await self.kube.budgets(namespace))
                updates = plan_final_report(budgets, report, self.clock())
                try:
                    for update in updates:  # folding a pod again is idempotent: keyed by its UID
                        await self._apply(update)
                    break
                except StatusConflict as conflict:
                    if attempt == WRITE_ATTEMPTS:
                        raise
                    logger.info("%s; folding pod %s again", conflict, report.pod_uid)
        logger.info("final usage of pod %s folded into %d budget(s)", report.pod_uid, len(updates))
        return len(updates)

    def _target(self, pod: Body) -> PushTarget:
        return target_of(pod, self.settings)

    async def _usage(self, token: str | None, pods: list[Body]) -> UsageRows:
        """Pod UID -> {budget identity -> usage row}, for ready pods that answered."""
        if token is None:
            return {}
        ready = [p for p in pods if pod_ready(p)]
        answers = await asyncio.gather(
            *(self.pusher.collect_usage(self._target(p), token) for p in ready)
        )
        rows: UsageRows = {}
        for pod, answer in zip(ready, answers, strict=True):
            report = _usage_report(pod, answer)
            if report is not None:
                rows[pod["metadata"]["uid"]] = {row.budget: row for row in report.budgets}
        return rows

    async def _apply(self, update: BudgetUpdate) -> None:
        if update.patch is not None:
            meta = update.budget.body["metadata"]
            await self.kube.patch_budget_status(
                meta["namespace"],
                meta["name"],
                update.patch,
                resource_version=meta.get("resourceVersion"),
            )
        for event in update.events:  # after the write: a write planned again posts them once
            self.post_event(event.body, event.type, event.reason, event.message)


def _usage_report(pod: Body, answer: Any) -> UsageReport | None:
    """A sidecar's answer as a report; one that does not validate is left out of this round."""
    if not isinstance(answer, dict):
        return None  # unreachable or refused: already counted by the pusher
    try:
        return UsageReport.model_validate(answer)
    except ValidationError as error:
        name = pod["metadata"].get("name")
        logger.warning("usage of pod %s ignored: %s", name, "; ".join(config_problems(error)))
        return None
