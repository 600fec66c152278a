"""Read a namespace once into typed views: the "read" of read -> plan -> apply.

One list of Deployments and one list of injected Pods, grouped: each opted-in Deployment with
its pods, and pods whose workload is not an opted-in Deployment (a namespace label, a
pod-template label on another kind of workload) grouped by their ``sluice.dev/workload`` label.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from sluice_operator.injection import INJECTED_LABEL, config_map_name
from sluice_operator.kube import Body, Kube
from sluice_operator.resources import Budget, Policy, read_policies, valid_budgets
from sluice_operator.workloads import Workload, alive, missing_sidecar, pod_workload


@dataclass(frozen=True)
class Workloads:
    deployments: list[Workload]  # opted in, each with its injected pods
    others: list[Workload]  # injected pods of anything else, by workload label

    def every(self) -> list[Workload]:
        return [*self.deployments, *self.others]

    def pods(self) -> list[Body]:
        return [pod for workload in self.every() for pod in workload.pods]


def group_workloads(
    deployments: list[Body], pods: list[Body], namespace_labels: Mapping[str, str]
) -> Workloads:
    """Pure: opted-in Deployments with their pods, and the rest of the injected pods."""
    opted = {}
    for body in deployments:
        workload = Workload.from_deployment(body)
        if workload.opted_in(namespace_labels):
            opted[workload.name] = workload
    others: dict[str, Workload] = {}
    for pod in pods:
        name = pod_workload(pod) or ""
        owner = opted.get(name)
        if owner is None:
            owner = others.setdefault(name, Workload.from_pod(name, pod))
        owner.pods.append(pod)
    return Workloads(list(opted.values()), list(others.values()))


async def read_workloads(
    kube: Kube, namespace: str, namespace_labels: Mapping[str, str]
) -> Workloads:
    deployments = await kube.deployments(namespace)
    pods = await kube.pods(namespace, f"{INJECTED_LABEL}=true")
    return group_workloads(deployments, pods, namespace_labels)


def injected(pods: list[Body]) -> list[Body]:
    return [p for p in pods if (p["metadata"].get("labels") or {}).get(INJECTED_LABEL) == "true"]


@dataclass(frozen=True)
class NamespaceState:
    """Everything one reconcile of a namespace decides from, read once."""

    namespace: str
    policies: list[Policy]  # not being deleted
    budgets: list[Budget]
    workloads: Workloads
    missing: list[Body] = field(default_factory=list)  # opted-in pods without the sidecar
    # workload -> its stored ConfigMap (None: none yet): the last good configuration a
    # workload keeps while its policies do not compile together. Read only for those
    # (``read_stored``); None: not read.
    stored: Mapping[str, Body | None] | None = None


async def read_namespace(kube: Kube, namespace: str) -> NamespaceState | None:
    """None when the namespace is gone or going, and everything in it."""
    namespace_labels = await kube.namespace_labels(namespace)
    if namespace_labels is None:
        return None
    policies = read_policies(b for b in await kube.policies(namespace) if alive(b))
    budgets = valid_budgets(await kube.budgets(namespace))
    # Every pod, once: the injected ones, and the opted-in ones the webhook missed (created
    # while it was unreachable, with failurePolicy Ignore).
    pods = await kube.pods(namespace, "")
    workloads = group_workloads(await kube.deployments(namespace), injected(pods), namespace_labels)
    missing = [p for p in pods if missing_sidecar(p, namespace_labels)]
    return NamespaceState(namespace, policies, budgets, workloads, missing)


async def read_stored(kube: Kube, state: NamespaceState, workloads: list[str]) -> NamespaceState:
    """``state`` with the stored ConfigMaps of ``workloads`` (those whose policies do not
    compile together): one read each, only when a reconcile needs them."""
    names = [config_map_name(w) for w in workloads]
    found = await asyncio.gather(*(kube.config_map(state.namespace, n) for n in names))
    return dataclasses.replace(state, stored=dict(zip(workloads, found, strict=True)))
