"""Reconcile planning, the pure part: a namespace's state in, what to write out.

``plan_namespace`` validates the policies (their model), compiles one ``SidecarConfig`` per
opted-in workload from the policies and budgets that select it, and says which ConfigMap to
store, whether the pod template must roll (new provider-key Secrets) and which ready sidecars
do not run that configuration yet. ``policy_status`` turns the outcome (how many sidecars run
it after the pushes, which provider keys they found unmounted) into each policy's status
patch and Events. The operator never reads a provider-key Secret: only the sidecars, which
see what their Pod mounted, say whether a key is there.
``reconcile.Reconciler`` reads the state, applies the plan and the status.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from sluice_operator import conditions
from sluice_operator.defaults import DEFAULT_POLICY
from sluice_operator.injection import WORKLOAD_LABEL, config_map_name
from sluice_operator.kube import Body
from sluice_operator.reading import NamespaceState
from sluice_operator.resources import key_secrets_annotation, policy_hash
from sluice_operator.selection import policies_for
from sluice_operator.status import ConditionDraft, Event, PolicyStatus, SidecarCount
from sluice_operator.workloads import (
    KEY_SECRETS_ANNOTATION,
    VERSION_ANNOTATION,
    Workload,
    alive,
    key_secrets_patch,
    pod_ready,
    reported_missing_keys,
)
from sluice_sidecar.contract import LlmPolicy, SidecarConfig, compile_policies, config_problems
from sluice_sidecar.contract.compiler import CompileError
from sluice_sidecar.contract.economics import WorkloadRef

Running = Mapping[str, str]  # pod UID -> configuration version it runs
MISSING_HINT = (
    "opted in to Sluice but runs without its sidecar (created while the injection webhook was"
    " unreachable?): delete the pod or roll its workload (kubectl rollout restart) to inject it"
)


@dataclass
class PolicyReport:
    """One policy's outcome: its problems, and the sidecars of the workloads it applies to."""

    body: Body
    problems: list[str] = field(default_factory=list)
    workloads: list[str] = field(default_factory=list)
    desired: int = 0
    synced: int = 0
    missing: list[str] = field(default_factory=list)  # its opted-in pods without the sidecar
    keys: dict[str, str] = field(default_factory=dict)  # "secret/key" it names -> provider
    checked: int = 0  # sidecars running its configuration that reported their keys
    unmounted: dict[str, list[str]] = field(default_factory=dict)  # "secret/key" -> pods


@dataclass(frozen=True)
class ConfigMapPlan:
    name: str
    data: dict[str, str]
    labels: dict[str, str]
    annotations: dict[str, str]
    owner_references: list[Body]  # its workload: deleting that deletes the ConfigMap


@dataclass(frozen=True)
class WorkloadPlan:
    """One opted-in workload: its configuration, where it is stored, who must get it."""

    workload: Workload
    document: dict[str, Any]  # the compiled SidecarConfig as JSON
    version: str
    config_map: ConfigMapPlan
    key_secrets: str  # the pod template's provider-key annotation wanted
    rollout: Body | None  # pod-template patch when that annotation changes; None: no rollout
    live: list[Body]  # its pods not being deleted
    running: dict[str, str]  # live pod UID -> the version it is known to run
    stale: list[Body]  # ready pods not running ``version``: to push to
    synced: int  # ready pods already running ``version``
    policies: list[PolicyReport]  # the reports of the policies that select it


@dataclass(frozen=True)
class NamespacePlan:
    namespace: str
    reports: list[PolicyReport]
    workloads: list[WorkloadPlan]  # those whose policies compiled
    problems: list[str]  # workloads whose policies do not compile together (kept as they run)
    missing: list[MissingPod] = field(default_factory=list)
    # Workloads planned on their fallback before their stored ConfigMaps were read
    # (``NamespaceState.stored`` None): plan again with them read.
    unread_fallbacks: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MissingPod:
    """An opted-in pod running without the sidecar, and the policies that select it."""

    pod: Body
    policies: list[str]

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    def event(self) -> Event:
        """The Warning on the Pod itself (``kubectl describe pod`` shows it)."""
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": self.pod["metadata"]}
        return Event(body, "Warning", "SidecarMissing", MISSING_HINT)


def named_keys(model: LlmPolicy | None) -> dict[str, str]:
    """``secret/key`` -> provider, for every provider key Secret the policy names."""
    providers = (model.spec.providers or []) if model is not None else []
    return {
        f"{p.api_key_secret_ref.name}/{p.api_key_secret_ref.key}": p.name
        for p in providers
        if p.api_key_secret_ref is not None
    }


def plan_namespace(
    state: NamespaceState, known: Mapping[str, Running] | None = None
) -> NamespacePlan:
    """The whole namespace's plan. ``known``: workload -> what this process pushed to its pods
    and is still annotating (the pods' annotations say the rest)."""
    reports: list[PolicyReport] = []
    valid: list[LlmPolicy] = []
    report_of: dict[str, PolicyReport] = {}
    for policy in state.policies:
        report = PolicyReport(policy.body, list(policy.problems), keys=named_keys(policy.model))
        reports.append(report)
        if not report.problems and policy.model is not None:
            valid.append(policy.model)
            report_of[policy.model.identity] = report
    plans = []
    problems = []
    unread = []
    # Every injected pod gets a configuration, whatever made it: a sidecar without one is
    # never Ready.
    for workload in state.workloads.every():
        matched = [(m, report_of[m.identity]) for m in policies_for(workload.labels, valid)]
        known_here = (known or {}).get(workload.name, {})
        compiled = _compile(state, workload, [model for model, _ in matched])
        if isinstance(compiled, SidecarConfig):
            wanted = Configuration.of(compiled, key_secrets_annotation(m for m, _ in matched))
            plans.append(_plan_workload(workload, wanted, matched, known_here))
            continue
        if state.stored is None:
            unread.append(workload.name)
        fallback, what = _fallback(state, workload)
        problem = f"{compiled}; meanwhile {state.namespace}/{workload.name} {what}"
        problems.append(problem)
        for _, report in matched:
            report.problems.append(problem)
        # Its sidecars do not run these policies: they count for none of them.
        plans.append(_plan_workload(workload, fallback, [], known_here))
    missing = []
    for pod in state.missing:
        labels = pod["metadata"].get("labels") or {}
        selecting = policies_for(labels, valid)
        for model in selecting:
            report_of[model.identity].missing.append(f"{state.namespace}/{pod['metadata']['name']}")
        missing.append(MissingPod(pod, [m.metadata.name for m in selecting]))
    return NamespacePlan(state.namespace, reports, plans, problems, missing, unread)


@dataclass(frozen=True)
class Configuration:
    """What a workload's sidecars are to run, and the provider-key annotation it needs."""

    document: dict[str, Any]  # the SidecarConfig as JSON
    version: str
    key_secrets: str | None  # the pod template's provider-key annotation; None: as it is

    @classmethod
    def of(cls, config: SidecarConfig, key_secrets: str | None) -> Configuration:
        return cls(
            config.model_dump(mode="json", by_alias=True), config.content_hash(), key_secrets
        )


def _plan_workload(
    workload: Workload,
    wanted: Configuration,
    matched: list[tuple[LlmPolicy, PolicyReport]],
    known: Running,
) -> WorkloadPlan:
    version, document = wanted.version, wanted.document
    current_keys = workload.template_annotations.get(KEY_SECRETS_ANNOTATION, "")
    wanted_keys = current_keys if wanted.key_secrets is None else wanted.key_secrets
    live = [p for p in workload.pods if alive(p)]
    # What each pod runs: its annotation, or what this process pushed and is still
    # annotating in the background (the annotation is what survives a restart).
    running = {
        p["metadata"]["uid"]: known.get(p["metadata"]["uid"])
        or (p["metadata"].get("annotations") or {}).get(VERSION_ANNOTATION)
        for p in live
    }
    ready = [p for p in live if pod_ready(p)]
    stale = [p for p in ready if running[p["metadata"]["uid"]] != version]
    return WorkloadPlan(
        workload=workload,
        document=document,
        version=version,
        config_map=ConfigMapPlan(
            name=config_map_name(workload.name),
            data={"config.json": json.dumps(document, indent=1, sort_keys=True)},
            labels={WORKLOAD_LABEL: workload.name, "app.kubernetes.io/managed-by": "sluice"},
            annotations={VERSION_ANNOTATION: version},
            owner_references=workload.owner_references(),
        ),
        key_secrets=wanted_keys,
        # Only a Deployment's pod template is the operator's to roll; other pods mount the
        # Secrets the webhook found when they were created.
        rollout=key_secrets_patch(wanted_keys)
        if workload.is_deployment and current_keys != wanted_keys
        else None,
        live=live,
        running={uid: v for uid, v in running.items() if v},
        stale=stale,
        synced=len(ready) - len(stale),
        policies=[report for _, report in matched],
    )


def _compile(
    state: NamespaceState, workload: Workload, policies: list[LlmPolicy], *, budgets: bool = True
) -> SidecarConfig | str:
    """The workload's configuration (built-in defaults when no policy selects it), or why its
    policies and budgets do not compile together."""
    namespace = state.namespace
    try:
        return compile_policies(
            policies or [DEFAULT_POLICY],
            policies_for(workload.labels, [b.model for b in state.budgets]) if budgets else [],
            workload=WorkloadRef(namespace=namespace, name=workload.name),
        )
    except (CompileError, ValidationError) as error:
        return f"policies selecting {namespace}/{workload.name} do not compile together: " + (
            "; ".join(config_problems(error)) if isinstance(error, ValidationError) else str(error)
        )


def _fallback(state: NamespaceState, workload: Workload) -> tuple[Configuration, str]:
    """What a workload runs while its policies do not compile together: the configuration it
    last stored (its running pods keep it, new ones start from it), else the built-in
    defaults with its budgets (without them when they are what does not compile). Never
    nothing: a new Pod's sidecar without a configuration would never be Ready. The pod
    template is left as it is (no rollout for a fallback)."""
    stored = _stored_config((state.stored or {}).get(workload.name))
    if stored is not None:
        return Configuration.of(
            stored, None
        ), f"keeps its last good configuration {stored.content_hash()}"
    defaults = _compile(state, workload, [])
    if isinstance(defaults, SidecarConfig):
        return Configuration.of(defaults, None), "runs the built-in defaults with its budgets"
    bare = _compile(state, workload, [], budgets=False)
    assert isinstance(bare, SidecarConfig), bare  # the built-in defaults always compile
    return Configuration.of(bare, None), "runs the built-in defaults without its budgets"


def _stored_config(config_map: Body | None) -> SidecarConfig | None:
    """The configuration a stored ConfigMap holds; None when absent or not one (edited)."""
    text = ((config_map or {}).get("data") or {}).get("config.json")
    if text is None:
        return None
    try:
        return SidecarConfig.model_validate_json(text)
    except ValidationError:
        return None


def count_sidecars(
    plan: NamespacePlan,
    applied: Mapping[str, int],
    reported: Mapping[str, set[str]] | None = None,
) -> list[PolicyReport]:
    """Each policy's workloads and sidecars once the pushes are done (``applied``: workload ->
    sidecars that took the configuration; ``reported``: pod UID -> the ``secret/key`` names
    its sidecar just answered missing for it, before the pod's annotation says so)."""
    for workload in plan.workloads:
        synced = workload.synced + applied.get(workload.workload.name, 0)
        for report in workload.policies:
            report.workloads.append(f"{plan.namespace}/{workload.workload.name}")
            report.desired += len(workload.live)
            report.synced += synced
        _count_keys(plan.namespace, workload, reported or {})
    return plan.reports


def _count_keys(namespace: str, workload: WorkloadPlan, reported: Mapping[str, set[str]]) -> None:
    """What the sidecars running the workload's configuration reported about the keys each
    of its policies names (a report on an older version says nothing about this one)."""
    for pod in workload.live:
        missing = reported.get(pod["metadata"]["uid"])
        if missing is None:
            missing = reported_missing_keys(pod, workload.version)
        if missing is None:
            continue
        for report in workload.policies:
            report.checked += 1
            for name in sorted(missing & report.keys.keys()):
                report.unmounted.setdefault(name, []).append(
                    f"{namespace}/{pod['metadata']['name']}"
                )


def keys_condition(report: PolicyReport, generation: int | None) -> ConditionDraft:
    """``KeysPresent``: True when every key the policy names is mounted where reported, False
    (``KeyMissing``) when a sidecar found one unmounted, Unknown (``KeysUnchecked``) while no
    sidecar running its configuration has reported."""
    if not report.keys:
        return conditions.condition(
            "KeysPresent", True, "NoKeys", "the policy names no provider key Secret", generation
        )
    if report.unmounted:
        return conditions.condition(
            "KeysPresent", False, "KeyMissing", _unmounted(report), generation
        )
    if not report.checked:
        return conditions.condition(
            "KeysPresent",
            None,
            "KeysUnchecked",
            "no sidecar running this policy's configuration has reported its keys yet (the"
            " operator does not read Secrets: each sidecar checks what its Pod mounted)",
            generation,
        )
    return conditions.condition(
        "KeysPresent",
        True,
        "KeysPresent",
        f"every provider key is mounted in the {report.checked} sidecar(s) that reported",
        generation,
    )


def _unmounted(report: PolicyReport) -> str:
    parts = []
    for name, pods in sorted(report.unmounted.items()):
        secret, key = name.split("/", 1)
        shown = ", ".join(sorted(pods)[:3]) + (", ..." if len(pods) > 3 else "")
        parts.append(
            f"provider {report.keys[name]}: Secret {secret} key {key} is not mounted in"
            f" {len(pods)} pod(s) ({shown})"
        )
    return (
        "; ".join(parts) + ": create the Secret or add the key (running pods see it once the"
        " kubelet refreshes the volume, within about a minute); calls to the provider are"
        " refused until then"
    )


def _missing(report: PolicyReport) -> str:
    shown = ", ".join(sorted(report.missing)[:5]) + (", ..." if len(report.missing) > 5 else "")
    return (
        f"{len(report.missing)} opted-in pod(s) run without the sidecar, ungoverned: {shown};"
        " roll their workloads (kubectl rollout restart) or delete them to inject it"
    )


def policy_status(report: PolicyReport, now: str) -> tuple[Body | None, list[Event]]:
    """The status patch (None when nothing changed) and the Events of one policy."""
    body = report.body
    generation = body["metadata"].get("generation")
    valid = not report.problems
    in_sync = report.synced == report.desired
    validity = conditions.condition(
        "Valid",
        valid,
        "Validated" if valid else "Invalid",
        "the policy is valid" if valid else "; ".join(report.problems),
        generation,
    )
    synced = conditions.condition(
        "Synced",
        valid and in_sync,
        "Synced" if in_sync else "Pending",
        f"{report.synced}/{report.desired} sidecars run this policy's configuration",
        generation,
    )
    injected = conditions.condition(
        "Injected",
        not report.missing,
        "Injected" if not report.missing else "SidecarMissing",
        "every selected opted-in pod has the sidecar" if not report.missing else _missing(report),
        generation,
    )
    keys = keys_condition(report, generation)
    # Keys nobody checked yet do not hold Ready back: only a key found missing does.
    good = valid and in_sync and not report.missing and keys.status != "False"
    ready = conditions.condition(
        "Ready",
        good,
        "Ready" if good else "NotReady",
        "applied to every selected sidecar"
        if good
        else validity.message or ""
        if not valid
        else synced.message or ""
        if not in_sync
        else injected.message or ""
        if report.missing
        else keys.message,
        generation,
    )
    new = [validity, synced, injected, keys, ready]
    old_status = body.get("status") or {}
    old = old_status.get("conditions")
    events = []
    was_valid = next((c["status"] for c in old or [] if c["type"] == "Valid"), None)
    if not valid and was_valid != "False":
        events.append(Event(body, "Warning", "InvalidPolicy", "; ".join(report.problems)))
    was_injected = next((c["status"] for c in old or [] if c["type"] == "Injected"), None)
    if report.missing and was_injected != "False":
        events.append(Event(body, "Warning", "SidecarMissing", _missing(report)))
    had_keys = next((c["status"] for c in old or [] if c["type"] == "KeysPresent"), None)
    if keys.status == "False" and had_keys != "False":
        events.append(Event(body, "Warning", "KeyMissing", keys.message))
    status = PolicyStatus(
        observed_generation=generation,
        config_hash=policy_hash(body),
        providers=len((body.get("spec") or {}).get("providers") or []),
        workloads=sorted(report.workloads),
        sidecars=SidecarCount(
            desired=report.desired,
            synced=report.synced,
            summary=f"{report.synced}/{report.desired}",
        ),
        conditions=conditions.merge_conditions(old, new, now),
    )
    patch = status.patch()
    current = {k: v for k, v in old_status.items() if k != "conditions"}
    wanted = {k: v for k, v in patch.items() if k != "conditions"}
    if current == wanted and conditions.same_conditions(old, new):
        return None, events
    return patch, events
