"""Reconcile one namespace: read -> plan -> apply, then the policies' status.

Everything is recomputed from the cluster each time (``reading.read_namespace``: policies,
budgets, Deployments, Pods and the ``sluice.dev/config-version`` annotation each Pod carries
after a successful push), so an operator restart loses nothing. ``plan.plan_namespace`` decides
(pure); this module writes the ConfigMaps, rolls pod templates, pushes, annotates, and writes
each policy's status (``plan.policy_status``). Runs for one namespace never overlap, and
requests that arrive while a run is in progress are folded into one follow-up run.

A request first waits for its namespace's burst to end: until no other request came for
``reconcile_debounce_s``, at most ``reconcile_debounce_max_s`` after the oldest waiting one.
A watch of every Pod and Deployment sees a scale-up or a rollout as dozens of events a
second; one run then covers them all instead of one run (a full read of the namespace) each.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from sluice_operator.kube import Body, Kube
from sluice_operator.plan import (
    MISSING_HINT,
    NamespacePlan,
    PolicyReport,
    Running,
    WorkloadPlan,
    count_sidecars,
    plan_namespace,
    policy_status,
)
from sluice_operator.pusher import Pusher, target_of
from sluice_operator.reading import read_namespace, read_stored
from sluice_operator.settings import OperatorSettings
from sluice_operator.workloads import missing_keys_annotations

logger = logging.getLogger("sluice.operator.reconcile")

__all__ = ["PolicyReport", "Reconciler", "read_and_plan"]


@dataclass
class _Runs:
    """One namespace's reconcile requests, numbered in arrival order."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    requested: int = 0
    taken: int = 0  # the newest request the run in progress (or the last one) covers
    done: int = 0
    oldest_waiting: float | None = None  # loop time of the oldest request no run has taken
    newest: float = 0.0  # loop time of the newest request


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        pusher: Pusher,
        settings: OperatorSettings,
        warn: Callable[[Body, str, str], None] = lambda body, reason, message: None,
    ) -> None:
        self.warn = warn  # posts a Warning Event on the object (kopf.warn in the operator)
        self.kube = kube
        self.pusher = pusher
        self.settings = settings
        self._runs: dict[str, _Runs] = defaultdict(_Runs)
        self.versions: dict[tuple[str, str], str] = {}  # (namespace, workload) -> version
        # (namespace, workload) -> pod UID -> version pushed (for live pods only)
        self._applied: dict[tuple[str, str], dict[str, str]] = {}
        self._background: set[asyncio.Task[None]] = set()
        # (namespace, workload) -> live pod UID -> the secret/key names its sidecar answered
        # missing at its last push (its annotation says the same once written)
        self._reported: dict[tuple[str, str], dict[str, set[str]]] = {}
        # namespace -> UIDs of the pods already warned about missing the sidecar (once each)
        self._missing_warned: dict[str, set[str]] = {}
        # (namespace, workload) -> UIDs of the pods a run in progress is pushing to
        self._pushing: dict[tuple[str, str], set[str]] = {}
        # Deployment UID -> what a plan reads of it, as of its last reconcile
        self._deployments: dict[str, tuple[object, ...]] = {}

    def pushed(self, namespace: str, workload: str | None, uid: str) -> str | None:
        """The version this process pushed to a pod (its annotation may still be on the way)."""
        return self._applied.get((namespace, workload or ""), {}).get(uid)

    def pushing(self, namespace: str, workload: str | None, uid: str) -> bool:
        """Whether a run in progress is pushing the wanted version to this pod: an event of
        it (the last change's annotation arriving late, its status) cannot change that run."""
        return uid in self._pushing.get((namespace, workload or ""), ())

    def keys_reported(self, namespace: str, workload: str, uid: str, names: set[str]) -> None:
        """What a pod's sidecar answered missing since its last push (``key_reports``)."""
        self._reported.setdefault((namespace, workload), {})[uid] = names

    def wanted(self, namespace: str, workload: str | None) -> str | None:
        """The version the last reconcile compiled for a workload."""
        return self.versions.get((namespace, workload or ""))

    def deployment_changed(self, body: Mapping[str, Any]) -> bool:
        """Whether a Deployment event can change a plan: its spec (the pod template, by its
        generation) or its annotations (the opt-in gesture) changed since it was last
        reconciled. Its status changes many times in each rollout, and no plan reads it."""
        return self._deployments.get(body["metadata"]["uid"]) != _plan_inputs(body)

    def deployment_reconciled(self, body: Mapping[str, Any]) -> None:
        """Remember what was reconciled (only once it was: a failed run is tried again on
        the next event)."""
        self._deployments[body["metadata"]["uid"]] = _plan_inputs(body)

    def deployment_deleted(self, body: Mapping[str, Any]) -> None:
        self._deployments.pop(body["metadata"]["uid"], None)

    async def reconcile(self, namespace: str) -> list[PolicyReport] | None:
        """Bring the namespace in line; None when a concurrent run already covered this call."""
        runs = self._runs[namespace]
        runs.requested += 1
        mine = runs.requested
        await self._burst_ended(runs, mine)
        async with runs.lock:
            if runs.done >= mine:
                return None
            runs.taken, runs.oldest_waiting = runs.requested, None
            reports = await self._reconcile(namespace)
            runs.done = runs.taken
            return reports

    async def _burst_ended(self, runs: _Runs, mine: int) -> None:
        """Wait until the namespace's requests pause (or the oldest waited long enough), or
        until a run that covers this request has started."""
        quiet, bound = self.settings.reconcile_debounce_s, self.settings.reconcile_debounce_max_s
        clock = asyncio.get_running_loop().time
        runs.newest = clock()
        if runs.oldest_waiting is None:
            runs.oldest_waiting = runs.newest
        while runs.taken < mine and runs.oldest_waiting is not None:
            due = min(runs.newest + quiet, runs.oldest_waiting + bound)
            if clock() >= due:
                return
            await asyncio.sleep(due - clock())

    async def _reconcile(self, namespace: str) -> list[PolicyReport]:
        started = asyncio.get_running_loop().time()
        try:
            known = {w: pods for (ns, w), pods in self._applied.items() if ns == namespace}
            plan = await read_and_plan(self.kube, namespace, known)
            if plan is None:
                return []  # the namespace is gone or going, and everything in it
            applied = await self._apply(plan)
            self._report_missing(plan)
            reported = {
                uid: names
                for (ns, _), pods in self._reported.items()
                if ns == namespace
                for uid, names in pods.items()
            }
            reports = count_sidecars(plan, applied, reported)
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            for report in reports:
                await self._write_status(namespace, report, now)
            return reports
        finally:
            logger.debug(
                "reconciled %s in %.0f ms",
                namespace,
                (asyncio.get_running_loop().time() - started) * 1000,
            )

    def _report_missing(self, plan: NamespacePlan) -> None:
        """One Warning Event per opted-in pod without the sidecar, and the gauge per policy
        (policy "" for the pods no policy selects)."""
        warned = self._missing_warned.setdefault(plan.namespace, set())
        current = {m.pod["metadata"]["uid"] for m in plan.missing}
        for missing in plan.missing:
            if missing.pod["metadata"]["uid"] not in warned:
                logger.warning("pod %s/%s: %s", plan.namespace, missing.name, MISSING_HINT)
                event = missing.event()
                self.warn(event.body, event.reason, event.message)
        warned.intersection_update(current)
        warned.update(current)
        counts = {r.body["metadata"]["name"]: len(r.missing) for r in plan.reports}
        unselected = sum(1 for m in plan.missing if not m.policies)
        if unselected:
            counts[""] = unselected
        self.pusher.metrics.set_sidecars(plan.namespace, "missing", counts)

    async def _apply(self, plan: NamespacePlan) -> dict[str, int]:
        """Write and push every workload's plan; workload -> sidecars that took it now."""
        for problem in plan.problems:
            logger.warning(problem)
        applied: dict[str, int] = {}
        token = None
        for workload in plan.workloads:
            if workload.rollout is not None:
                logger.info(
                    "workload %s/%s: provider key Secrets now %r; rolling out",
                    plan.namespace,
                    workload.workload.name,
                    workload.key_secrets,
                )
                await self.kube.patch_deployment_template(
                    plan.namespace, workload.workload.name, workload.rollout
                )
            token = token or await self.kube.admin_token(
                plan.namespace, self.settings.admin_token_secret
            )
            applied[workload.workload.name] = await self._sync(plan.namespace, workload, token)
        return applied

    async def _sync(self, namespace: str, plan: WorkloadPlan, token: str) -> int:
        """Store the configuration, push it to the stale sidecars; how many took it."""
        name = plan.workload.name
        uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in plan.stale}
        self._pushing[(namespace, name)] = set(uids.values())
        try:
            self.versions[(namespace, name)] = plan.version
            config_map = plan.config_map
            await self.kube.apply_config_map(
                namespace,
                config_map.name,
                config_map.data,
                labels=config_map.labels,
                annotations=config_map.annotations,
                owner_references=config_map.owner_references,
            )
            self._applied[(namespace, name)] = dict(plan.running)
            if not plan.stale:
                return 0
            targets = [target_of(p, self.settings) for p in plan.stale]
            document = json.dumps(plan.document).encode()
            results = await self.pusher.push_all(targets, document, token)
        finally:
            del self._pushing[(namespace, name)]
        applied = [r.pod for r in results if r.ok]
        for pod in applied:
            self._applied[(namespace, name)][uids[pod]] = plan.version
        live = {p["metadata"]["uid"] for p in plan.live}
        reported = self._reported.setdefault((namespace, name), {})
        for uid in set(reported) - live:
            del reported[uid]
        for result in results:
            if result.ok:
                reported[uids[result.pod]] = {f"{s}/{k}" for s, k in result.missing_keys}
        # The per-pod record of what it runs and which keys it lacks, for a restarted
        # operator; off the critical path, so the next change is not kept waiting behind it.
        annotations = {
            r.pod: missing_keys_annotations(plan.version, r.missing_keys) for r in results if r.ok
        }
        self._spawn(self._annotate(namespace, annotations))
        logger.info(
            "workload %s/%s: configuration %s on %d/%d sidecars",
            namespace,
            name,
            plan.version,
            plan.synced + len(applied),
            len(plan.live),
        )
        return len(applied)

    async def _write_status(self, namespace: str, report: PolicyReport, now: str) -> None:
        patch, events = policy_status(report, now)
        for event in events:
            self.warn(event.body, event.reason, event.message)
        if patch is not None:
            await self.kube.patch_policy_status(namespace, report.body["metadata"]["name"], patch)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _annotate(self, namespace: str, annotations: dict[str, dict[str, str]]) -> None:
        pods = list(annotations)
        results = await asyncio.gather(
            *(self.kube.annotate_pod(namespace, pod, annotations[pod]) for pod in pods),
            return_exceptions=True,
        )
        for pod, result in zip(pods, results, strict=True):
            if isinstance(result, Exception) and not (
                isinstance(result, ApiException) and result.status == 404
            ):
                logger.warning("cannot annotate pod %s/%s: %s", namespace, pod, result)


async def read_and_plan(
    kube: Kube, namespace: str, known: Mapping[str, Running] | None = None
) -> NamespacePlan | None:
    """The namespace read and planned; None when it is gone or going. The stored ConfigMaps are
    read only when a workload's policies do not compile together (its fallback is the last
    one stored), and then that workload is planned again."""
    state = await read_namespace(kube, namespace)
    if state is None:
        return None
    plan = plan_namespace(state, known)
    if plan.unread_fallbacks:
        plan = plan_namespace(await read_stored(kube, state, plan.unread_fallbacks), known)
    return plan


def _plan_inputs(deployment: Mapping[str, Any]) -> tuple[object, ...]:
    """What ``reading``/``plan`` read of a Deployment: its template (which bumps the
    generation), its annotations and whether it is being deleted."""
    metadata = deployment["metadata"]
    annotations = metadata.get("annotations") or {}
    return (
        metadata.get("generation"),
        tuple(sorted(annotations.items())),
        metadata.get("deletionTimestamp"),
    )
