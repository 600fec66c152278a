"""kopf handlers: thin entry points that hand the work to the reconciler and the webhook.

Everything is level-based: a change to a policy, a Deployment or an injected Pod asks for a
reconcile of its namespace, which recomputes the desired state from the cluster. Handlers use
``on.event`` (no per-object state is written by kopf) except the admission webhook.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import kopf

from sluice_operator.aggregator import BudgetAggregator
from sluice_operator.budget_plan import budget_feedback
from sluice_operator.certificates import WebhookTls
from sluice_operator.circuit_events import CircuitWatch
from sluice_operator.injection import INJECT_ANNOTATION, INJECTED_LABEL
from sluice_operator.key_reports import KeyReports
from sluice_operator.kube import Body, Kube
from sluice_operator.metrics import OperatorMetrics, ReconcileKind, start_metrics_server
from sluice_operator.pusher import Pusher
from sluice_operator.reconcile import Reconciler
from sluice_operator.settings import OperatorSettings, load_operator_settings
from sluice_operator.usage_server import start_usage_server
from sluice_operator.webhook import mutate_pod
from sluice_operator.workloads import (
    NAMESPACE_INJECT_LABEL,
    VERSION_ANNOTATION,
    Workload,
    opt_in_change,
    opted_in_by,
    pod_ready,
    pod_workload,
)

# The settings are read once, here, when the handlers register (``__main__`` imports this
# module before kopf starts): kopf takes a timer's interval from its decorator, so the timers
# need their settings at import. ``start`` hands the same object to everything else, so a
# single read of the SLUICE_OPERATOR_* variables decides all; any change needs a restart.
SETTINGS = load_operator_settings()
USAGE_INTERVAL_S = SETTINGS.usage_interval_s
logger = logging.getLogger("sluice.operator")


# kopf's Event posting reads a plain dict body exactly as its own Body type.
def _warn(body: Body, reason: str, message: str) -> None:
    kopf.warn(body, reason=reason, message=message)  # type: ignore[arg-type]


def _post_event(body: Body, kind: str, reason: str, message: str) -> None:
    kopf.event(body, type=kind, reason=reason, message=message)  # type: ignore[arg-type]


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff base. kopf builds one from every watched event (a deep copy of the body, for
    every Pod and Deployment of the cluster) for its on.create/update/delete handlers, and the
    operator has none: its handlers are level-based (``on.event``, timers, the index, the
    webhook). Building it was 15 % of the operator's CPU at 100 pods (docs/performance.md,
    "Operator at scale"). A handler that reads ``diff``, ``old`` or ``new`` needs it back."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    operator_settings = SETTINGS
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="sluice.dev")
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    # Policies are level-based: react to the newest event at once rather than batching.
    settings.batching.batch_window = 0.01
    # A policy's timers hold kopf's finalizer on it: one still running when the policy is
    # deleted (a poll of slow sidecars) is checked again after this, not kopf's 60 s, so
    # `kubectl delete` waits for the poll, not a minute (e2e/test_policy_deletion.py).
    settings.background.cancellation_polling = 1.0
    _configure_peering(settings, operator_settings)
    kube = await Kube.connect()
    memo.metrics = metrics = OperatorMetrics()
    memo.tls_task = None
    memo.metrics_server = None
    if operator_settings.metrics_port is not None:
        memo.metrics_server = await start_metrics_server(
            metrics, operator_settings.metrics_addr, operator_settings.metrics_port
        )
    pusher = Pusher(operator_settings, metrics)
    await pusher.start()
    memo.settings = operator_settings
    memo.kube = kube
    memo.pusher = pusher
    memo.reconciler = Reconciler(
        kube,
        pusher,
        operator_settings,
        warn=_warn,
    )
    memo.server_minor = await kube.server_minor()
    memo.budgets = BudgetAggregator(
        kube,
        pusher,
        operator_settings,
        post_event=_post_event,
    )
    memo.usage_server = await start_usage_server(kube, memo.budgets, operator_settings)
    if operator_settings.webhook_enabled:
        tls = WebhookTls(kube, operator_settings, metrics)
        settings.admission.server = await tls.start()
        memo.tls_task = asyncio.create_task(tls.run(), name="webhook certificate")
        settings.admission.managed = None  # the chart owns the webhook configuration


def _configure_peering(settings: kopf.OperatorSettings, ours: OperatorSettings) -> None:
    """Several replicas: the live one with the highest priority is active, the others pause
    their watches and timers (their webhook, usage and metrics servers keep serving)."""
    if ours.peering_name is None:
        return
    settings.peering.standalone = False
    settings.peering.mandatory = True
    settings.peering.name = ours.peering_name
    settings.peering.lifetime = ours.peering_lifetime_s
    # Distinct priorities: equal ones would pause every replica (kopf's rule for a conflict).
    priority = ours.peering_priority
    settings.peering.priority = priority if priority is not None else secrets.randbelow(2**31)
    logger.info("peering %s with priority %d", settings.peering.name, settings.peering.priority)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    if memo.tls_task is not None:
        memo.tls_task.cancel()
    await memo.usage_server.cleanup()
    if memo.metrics_server is not None:
        await memo.metrics_server.cleanup()
    await memo.pusher.close()
    await memo.kube.close()


def _name(body: Body) -> str:
    return str(body["metadata"]["name"])


async def _reconcile(memo: Any, namespace: str, kind: ReconcileKind, why: str) -> None:
    logger.debug("reconciling %s: %s", namespace, why)
    metrics: OperatorMetrics = memo.metrics
    with metrics.reconcile(kind) as outcome:
        reports = await memo.reconciler.reconcile(namespace)
        outcome.coalesced = reports is None
    if reports is not None:
        metrics.set_sidecars(namespace, "desired", {_name(r.body): r.desired for r in reports})
        metrics.set_sidecars(namespace, "synced", {_name(r.body): r.synced for r in reports})


@kopf.on.event("sluice.dev", "v1alpha1", "llmpolicies")
@kopf.on.event("sluice.dev", "v1alpha1", "llmbudgets")
async def resource_event(
    event: kopf.RawEvent, body: kopf.Body, namespace: str | None, memo: Any, **_: Any
) -> None:
    """Policies and budgets both compile into the sidecars' configuration."""
    if namespace is None:
        return
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    kind: ReconcileKind = "LlmBudget" if body.get("kind") == "LlmBudget" else "LlmPolicy"
    if event["type"] == "MODIFIED" and meta.get("generation") == status.get("observedGeneration"):
        memo.metrics.event_ignored(kind)
        return  # our own status write
    if kind == "LlmBudget" and event["type"] != "DELETED":
        await _report_budget(memo, namespace, dict(body))
    await _reconcile(memo, namespace, kind, f"{kind} {meta.get('name')} {event['type']}")


async def _report_budget(memo: Any, namespace: str, body: Body) -> None:
    """A budget's Valid/Ready conditions, and the Event of one turning invalid."""
    feedback = budget_feedback(body, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    for event in feedback.events:
        _post_event(event.body, event.type, event.reason, event.message)
    if feedback.patch is not None:
        await memo.kube.patch_budget_status(namespace, body["metadata"]["name"], feedback.patch)


@kopf.timer("sluice.dev", "v1alpha1", "llmbudgets", interval=USAGE_INTERVAL_S, idle=None)
async def collect_usage(namespace: str | None, memo: Any, **_: Any) -> None:
    if namespace is not None:
        await memo.budgets.collect(namespace)


@kopf.timer("sluice.dev", "v1alpha1", "llmpolicies", interval=USAGE_INTERVAL_S, idle=None)
async def collect_circuit_changes(namespace: str | None, memo: Any, **_: Any) -> None:
    """Sidecars' breaker state changes as Events on the policies (``circuit_events``)."""
    if namespace is None:
        return
    if "circuits" not in memo:
        memo.circuits = CircuitWatch(memo.kube, memo.pusher, memo.settings)
    await memo.circuits.collect(namespace)
    if "key_reports" not in memo:
        memo.key_reports = KeyReports(memo.kube, memo.pusher, memo.settings, memo.reconciler)
    await memo.key_reports.collect(namespace)


@kopf.on.event("apps", "v1", "deployments")
async def deployment_event(
    event: kopf.RawEvent, body: kopf.Body, namespace: str | None, memo: Any, **_: Any
) -> None:
    """Copy the opt-in gesture into the pod template (or remove it); reconcile opted-in ones
    when something a plan reads changed (not on the status updates of each rollout)."""
    if namespace is None:
        return
    reconciler: Reconciler = memo.reconciler
    if event["type"] == "DELETED":
        reconciler.deployment_deleted(body)
        return
    if not reconciler.deployment_changed(body):
        memo.metrics.event_ignored("Deployment")
        return
    workload = Workload.from_deployment(dict(body))
    change = opt_in_change(workload)
    if change is not None:
        await memo.kube.patch_deployment_template(namespace, workload.name, change.patch)
        logger.info("deployment %s/%s %s", namespace, workload.name, change.description)
    if workload.wants_injection or workload.template_injected:
        await _reconcile(memo, namespace, "Deployment", f"deployment {workload.name}")
    reconciler.deployment_reconciled(body)


@kopf.on.event("", "v1", "pods", labels={INJECTED_LABEL: "true"})
async def pod_event(
    event: kopf.RawEvent, body: kopf.Body, namespace: str | None, memo: Any, **_: Any
) -> None:
    """A sidecar that became ready gets the current configuration at once."""
    if namespace is None:
        return
    pod = dict(body)
    workload, uid = pod_workload(pod), pod["metadata"]["uid"]
    reconciler: Reconciler = memo.reconciler
    running = reconciler.pushed(namespace, workload, uid) or (
        pod["metadata"].get("annotations") or {}
    ).get(VERSION_ANNOTATION)
    wanted = reconciler.wanted(namespace, workload)
    stale = running is None or running != wanted
    if event["type"] == "DELETED" or (
        pod_ready(pod)
        and workload is not None
        and stale
        and not reconciler.pushing(namespace, workload, uid)
    ):
        await _reconcile(memo, namespace, "Pod", f"pod {pod['metadata']['name']} {event['type']}")
    else:
        # Not ready yet, already running what is wanted, or being pushed it right now.
        memo.metrics.event_ignored("Pod")


@kopf.index("", "v1", "namespaces", labels={NAMESPACE_INJECT_LABEL: "enabled"})
def injecting_namespaces(name: str, **_: Any) -> dict[str, bool]:
    """The namespaces whose every pod opts in (kopf keeps the index as their labels change,
    and fills it before any other handler runs)."""
    return {name: True}


def _opted_in(
    labels: kopf.Labels, annotations: kopf.Annotations, namespace: str | None, **kwargs: Any
) -> bool:
    """A Pod that asks for the sidecar by its own label or annotation, or by its namespace's
    label (and does not opt out)."""
    injecting: kopf.Index[str, bool] = kwargs["injecting_namespaces"]  # kopf passes indices
    enabled = namespace is not None and namespace in injecting
    namespace_labels = {NAMESPACE_INJECT_LABEL: "enabled"} if enabled else {}
    gestures = (labels.get(INJECT_ANNOTATION), annotations.get(INJECT_ANNOTATION))
    return opted_in_by(gestures, namespace_labels)


@kopf.on.event("", "v1", "pods", labels={INJECTED_LABEL: kopf.ABSENT}, when=_opted_in)
async def uninjected_pod_event(
    event: kopf.RawEvent, body: kopf.Body, namespace: str | None, memo: Any, **_: Any
) -> None:
    """An opted-in Pod admitted without the sidecar (the webhook was unreachable) is reported
    when it appears, not at the namespace's next reconcile."""
    if namespace is None or event["type"] not in (None, "ADDED"):  # None: the initial listing
        return
    await _reconcile(memo, namespace, "Pod", f"pod {body['metadata']['name']} without the sidecar")


@kopf.on.mutate("", "v1", "pods", operations={"CREATE"}, id="inject", ignore_failures=True)
async def inject_sidecar(
    body: kopf.Body,
    patch: kopf.Patch,
    namespace: str | None,
    memo: Any,
    dryrun: bool,
    warnings: list[str],
    **_: Any,
) -> None:
    if namespace is None:
        return
    with memo.metrics.admission() as outcome:
        injected = await mutate_pod(
            dict(body), namespace, memo.kube, memo.settings, memo.server_minor, dryrun, warnings
        )
        outcome.injected = injected is not None
    if injected is None:
        return

    def replace(target: kopf.RawBody) -> None:
        target["metadata"] = injected["metadata"]
        target["spec"] = injected["spec"]

    patch.fns.append(replace)
