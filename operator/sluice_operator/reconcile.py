"""Reconcile one namespace: policies -> one SidecarConfig per workload -> ConfigMap -> sidecars.

Everything is recomputed from the cluster each time (policies, Deployments, Pods and the
``sluice.dev/config-version`` annotation each Pod carries after a successful push), so an
operator restart loses nothing. Runs for one namespace never overlap, and requests that arrive
while a run is in progress are folded into one follow-up run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from sluice_operator import conditions
from sluice_operator.defaults import DEFAULT_POLICY
from sluice_operator.injection import (
    INJECT_ANNOTATION,
    INJECTED_LABEL,
    WORKLOAD_LABEL,
    config_map_name,
)
from sluice_operator.kube import Body, Kube
from sluice_operator.pusher import Pusher, PushTarget
from sluice_operator.selection import selector_matches
from sluice_operator.settings import OperatorSettings
from sluice_sidecar.config import LlmPolicy, SidecarConfig, compile_policies, config_problems
from sluice_sidecar.config.compiler import CompileError
from sluice_sidecar.config.economics import WorkloadRef
from sluice_sidecar.config.model import LlmBudget

logger = logging.getLogger("sluice.operator.reconcile")

VERSION_ANNOTATION = "sluice.dev/config-version"
KEY_SECRETS_ANNOTATION = "sluice.dev/provider-key-secrets"
NAMESPACE_INJECT_LABEL = "sluice.dev/inject"  # value "enabled" opts a whole namespace in


@dataclass
class PolicyReport:
    body: Body
    problems: list[str] = field(default_factory=list)
    workloads: list[str] = field(default_factory=list)
    desired: int = 0
    synced: int = 0


@dataclass
class _Runs:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    requested: int = 0
    done: int = 0


def pod_ready(pod: Body) -> bool:
    status = pod.get("status") or {}
    if not status.get("podIP") or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def opted_in(deployment: Body, namespace_labels: dict[str, str]) -> bool:
    annotations = deployment["metadata"].get("annotations") or {}
    template = (deployment["spec"]["template"].get("metadata") or {}).get("annotations") or {}
    if "false" in (annotations.get(INJECT_ANNOTATION), template.get(INJECT_ANNOTATION)):
        return False
    return (
        annotations.get(INJECT_ANNOTATION) == "true"
        or template.get(INJECT_ANNOTATION) == "true"
        or namespace_labels.get(NAMESPACE_INJECT_LABEL) == "enabled"
    )


def key_secrets(policies: list[LlmPolicy]) -> dict[str, list[str]]:
    """Secret name -> keys, for every apiKeySecretRef of the given policies."""
    found: dict[str, set[str]] = {}
    for policy in policies:
        for provider in policy.spec.providers or []:
            if (ref := provider.api_key_secret_ref) is not None:
                found.setdefault(ref.name, set()).add(ref.key)
    return {name: sorted(keys) for name, keys in sorted(found.items())}


def key_secrets_annotation(policies: list[LlmPolicy]) -> str:
    return ",".join(f"{name}/{key}" for name, keys in key_secrets(policies).items() for key in keys)


def policy_hash(body: Body) -> str:
    text = json.dumps(body.get("spec") or {}, sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


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

    def pushed(self, namespace: str, workload: str, uid: str) -> str | None:
        """The version this process pushed to a pod (its annotation may still be on the way)."""
        return self._applied.get((namespace, workload), {}).get(uid)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _annotate(self, namespace: str, pods: list[str], version: str) -> None:
        results = await asyncio.gather(
            *(
                self.kube.annotate_pod(namespace, pod, {VERSION_ANNOTATION: version})
                for pod in pods
            ),
            return_exceptions=True,
        )
        for pod, result in zip(pods, results, strict=True):
            if isinstance(result, Exception) and not (
                isinstance(result, ApiException) and result.status == 404
            ):
                logger.warning("cannot annotate pod %s/%s: %s", namespace, pod, result)

    async def reconcile(self, namespace: str) -> list[PolicyReport] | None:
        """Bring the namespace in line; None when a concurrent run already covered this call."""
        runs = self._runs[namespace]
        runs.requested += 1
        mine = runs.requested
        async with runs.lock:
            if runs.done >= mine:
                return None
            target = runs.requested
            reports = await self._reconcile(namespace)
            runs.done = target
            return reports

    async def _reconcile(self, namespace: str) -> list[PolicyReport]:
        started = asyncio.get_running_loop().time()
        try:
            return await self._reconcile_namespace(namespace)
        finally:
            logger.debug(
                "reconciled %s in %.0f ms",
                namespace,
                (asyncio.get_running_loop().time() - started) * 1000,
            )

    async def _reconcile_namespace(self, namespace: str) -> list[PolicyReport]:
        namespace_labels = await self.kube.namespace_labels(namespace)
        if namespace_labels is None:
            return []  # the namespace is gone or going, and everything in it
        bodies = [
            b
            for b in await self.kube.policies(namespace)
            if not b["metadata"].get("deletionTimestamp")
        ]
        reports = [PolicyReport(body) for body in bodies]
        valid: list[tuple[LlmPolicy, PolicyReport]] = []
        for report in reports:
            report.problems = await self._validate(namespace, report.body)
            if not report.problems:
                valid.append((LlmPolicy.model_validate(report.body), report))

        budgets = []
        for body in await self.kube.budgets(namespace):
            try:
                budgets.append(LlmBudget.model_validate(body))
            except ValidationError as error:
                logger.warning(
                    "LlmBudget %s/%s skipped: %s",
                    namespace,
                    body["metadata"]["name"],
                    "; ".join(config_problems(error)),
                )
        token = None
        for deployment in await self.kube.deployments(namespace):
            if not opted_in(deployment, namespace_labels):
                continue
            workload = deployment["metadata"]["name"]
            labels = (deployment["spec"]["template"].get("metadata") or {}).get("labels") or {}
            matched = [(p, r) for p, r in valid if selector_matches(p.spec.selector, labels)]
            selected = [b for b in budgets if selector_matches(b.spec.selector, labels)]
            config = self._compile(namespace, workload, [p for p, _ in matched], matched, selected)
            if config is None:
                continue
            await self._roll_out_new_keys(namespace, deployment, [p for p, _ in matched])
            token = token or await self.kube.admin_token(
                namespace, self.settings.admin_token_secret
            )
            desired, synced = await self._sync_workload(namespace, workload, config, token)
            for _, report in matched:
                report.workloads.append(f"{namespace}/{workload}")
                report.desired += desired
                report.synced += synced

        for report in reports:
            await self._write_status(namespace, report)
        return reports

    async def _roll_out_new_keys(
        self, namespace: str, deployment: Body, policies: list[LlmPolicy]
    ) -> None:
        """Provider keys are Secret volumes mounted at Pod creation: when the set of Secrets
        the workload's policies name changes, roll the Deployment so new Pods mount them."""
        wanted = key_secrets_annotation(policies)
        template = deployment["spec"]["template"].get("metadata") or {}
        if (template.get("annotations") or {}).get(KEY_SECRETS_ANNOTATION, "") == wanted:
            return
        name = deployment["metadata"]["name"]
        logger.info(
            "workload %s/%s: provider key Secrets now %r; rolling out", namespace, name, wanted
        )
        await self.kube.patch_deployment_template(
            namespace,
            name,
            {
                "spec": {
                    "template": {
                        "metadata": {"annotations": {KEY_SECRETS_ANNOTATION: wanted or None}}
                    }
                }
            },
        )

    async def _validate(self, namespace: str, body: Body) -> list[str]:
        try:
            policy = LlmPolicy.model_validate(body)
        except ValidationError as error:
            return config_problems(error)
        problems = []
        for provider in policy.spec.providers or []:
            ref = provider.api_key_secret_ref
            if ref is None:
                continue
            keys = await self.kube.secret_keys(namespace, ref.name)
            if keys is None:
                problems.append(f"provider {provider.name}: Secret {ref.name} not found")
            elif ref.key not in keys:
                problems.append(f"provider {provider.name}: Secret {ref.name} has no key {ref.key}")
        return problems

    def _compile(
        self,
        namespace: str,
        workload: str,
        policies: list[LlmPolicy],
        matched: list[tuple[LlmPolicy, PolicyReport]],
        budgets: list[LlmBudget],
    ) -> SidecarConfig | None:
        try:
            return compile_policies(
                policies or [DEFAULT_POLICY],
                budgets,
                workload=WorkloadRef(namespace=namespace, name=workload),
            )
        except (CompileError, ValidationError) as error:
            problem = f"policies selecting {namespace}/{workload} do not compile together: " + (
                "; ".join(config_problems(error))
                if isinstance(error, ValidationError)
                else str(error)
            )
            logger.warning(problem)
            for _, report in matched:
                report.problems.append(problem)
            return None

    async def _sync_workload(
        self, namespace: str, workload: str, config: SidecarConfig, token: str
    ) -> tuple[int, int]:
        version = config.content_hash()
        self.versions[(namespace, workload)] = version
        document = config.model_dump(mode="json", by_alias=True)
        await self.kube.apply_config_map(
            namespace,
            config_map_name(workload),
            {"config.json": json.dumps(document, indent=1, sort_keys=True)},
            labels={WORKLOAD_LABEL: workload, "app.kubernetes.io/managed-by": "sluice"},
            annotations={VERSION_ANNOTATION: version},
        )
        pods = await self.kube.pods(namespace, f"{INJECTED_LABEL}=true,{WORKLOAD_LABEL}={workload}")
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        ready = [p for p in live if pod_ready(p)]
        # What each pod runs: its annotation, or what this process pushed and is still
        # annotating in the background (the annotation is what survives a restart).
        known = self._applied.pop((namespace, workload), {})
        running = {
            p["metadata"]["uid"]: known.get(p["metadata"]["uid"])
            or (p["metadata"].get("annotations") or {}).get(VERSION_ANNOTATION)
            for p in live
        }
        self._applied[(namespace, workload)] = {u: v for u, v in running.items() if v}
        stale = [p for p in ready if running[p["metadata"]["uid"]] != version]
        synced = len(ready) - len(stale)
        if stale:
            targets = [
                PushTarget(
                    p["metadata"]["name"],
                    self.settings.admin_host_override or p["status"]["podIP"],
                    self.settings.admin_port,
                )
                for p in stale
            ]
            body = json.dumps(document).encode()
            results = await self.pusher.push_all(targets, body, token)
            uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in stale}
            applied = [r.pod for r in results if r.ok]
            synced += len(applied)
            for pod in applied:
                self._applied[(namespace, workload)][uids[pod]] = version
            # The per-pod record of what it runs, for a restarted operator; off the critical
            # path, so the next change is not kept waiting behind it.
            self._spawn(self._annotate(namespace, applied, version))
            logger.info(
                "workload %s/%s: configuration %s on %d/%d sidecars",
                namespace,
                workload,
                version,
                synced,
                len(live),
            )
        return len(live), synced

    async def _write_status(self, namespace: str, report: PolicyReport) -> None:
        body = report.body
        generation = body["metadata"].get("generation")
        valid = not report.problems
        in_sync = report.synced == report.desired
        new = [
            conditions.condition(
                "Valid",
                valid,
                "Validated" if valid else "Invalid",
                "the policy is valid" if valid else "; ".join(report.problems),
                generation,
            ),
            conditions.condition(
                "Synced",
                valid and in_sync,
                "Synced" if in_sync else "Pending",
                f"{report.synced}/{report.desired} sidecars run this policy's configuration",
                generation,
            ),
        ]
        new.append(
            conditions.condition(
                "Ready",
                valid and in_sync,
                "Ready" if valid and in_sync else "NotReady",
                "applied to every selected sidecar"
                if valid and in_sync
                else new[0]["message"]
                if not valid
                else new[1]["message"],
                generation,
            )
        )
        old = (body.get("status") or {}).get("conditions")
        was_valid = next((c["status"] for c in old or [] if c["type"] == "Valid"), None)
        if not valid and was_valid != "False":
            self.warn(body, "InvalidPolicy", "; ".join(report.problems))
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "configHash": policy_hash(body),
            "providers": len((body.get("spec") or {}).get("providers") or []),
            "workloads": sorted(report.workloads),
            "sidecars": {
                "desired": report.desired,
                "synced": report.synced,
                "summary": f"{report.synced}/{report.desired}",
            },
            "conditions": conditions.merge_conditions(old, new),
        }
        current = {k: v for k, v in (body.get("status") or {}).items() if k != "conditions"}
        wanted = {k: v for k, v in status.items() if k != "conditions"}
        same_conditions = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in old or []
        ] == [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in new]
        if current == wanted and same_conditions:
            return
        await self.kube.patch_policy_status(namespace, body["metadata"]["name"], status)
