"""Typed views of opted-in workloads and their pods, read from raw Kubernetes bodies.

Every "is this Deployment opted in", "what are its pod-template labels", "is this pod ready"
question is answered here, once, for the reconciler, the budget aggregator and the handlers.
Pure functions over the dictionaries the API server sends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sluice_operator.injection import (
    INJECT_ANNOTATION,
    INJECTED_LABEL,
    SIDECAR_NAME,
    WORKLOAD_LABEL,
    is_injected,
)
from sluice_operator.kube import Body

VERSION_ANNOTATION = "sluice.dev/config-version"  # on a pod: the configuration it runs
KEY_SECRETS_ANNOTATION = "sluice.dev/provider-key-secrets"  # on a pod template
# On a pod, beside VERSION_ANNOTATION: the ``secret/key`` files that version names and the
# sidecar found unmounted ("" none), as its admin API reported them (``missingKeys``).
MISSING_KEYS_ANNOTATION = "sluice.dev/missing-keys"
MANAGED_ANNOTATION = "sluice.dev/inject-managed"  # the operator copied the opt-in gesture
NAMESPACE_INJECT_LABEL = "sluice.dev/inject"  # value "enabled" opts a whole namespace in
FINISHED = ("Succeeded", "Failed")  # pod phases with nothing left running


def opted_in_by(gestures: Iterable[str | None], namespace_labels: Mapping[str, str]) -> bool:
    """The ``sluice.dev/inject`` values found (annotations, labels): any "false" opts out,
    then any "true" or the namespace label ``sluice.dev/inject=enabled`` opts in."""
    found = set(gestures)
    if "false" in found:
        return False
    return "true" in found or namespace_labels.get(NAMESPACE_INJECT_LABEL) == "enabled"


def pod_ready(pod: Body) -> bool:
    """A sidecar that can be pushed to: an IP, not being deleted, and the Pod Ready or its
    sidecar container started (a sidecar without a configuration is never Ready, so waiting
    for Ready before the first push would leave it unready for good)."""
    status = pod.get("status") or {}
    if not status.get("podIP") or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    containers = (status.get("initContainerStatuses") or []) + (
        status.get("containerStatuses") or []
    )
    return ready or any(c.get("name") == SIDECAR_NAME and c.get("started") for c in containers)


def missing_sidecar(pod: Body, namespace_labels: Mapping[str, str]) -> bool:
    """An opted-in pod running without the sidecar: the webhook never saw it (it was
    unreachable and ``failurePolicy: Ignore`` admitted the pod), or it came before the
    gesture. Pods the webhook skips on purpose (hostNetwork) and finished pods are not."""
    metadata, spec = pod["metadata"], pod.get("spec") or {}
    labels, annotations = metadata.get("labels") or {}, metadata.get("annotations") or {}
    if is_injected(pod) or labels.get(INJECTED_LABEL) == "true" or not alive(pod):
        return False
    if spec.get("hostNetwork") or (pod.get("status") or {}).get("phase") in FINISHED:
        return False
    gestures = (labels.get(INJECT_ANNOTATION), annotations.get(INJECT_ANNOTATION))
    return opted_in_by(gestures, namespace_labels)


def reported_missing_keys(pod: Body, version: str) -> set[str] | None:
    """The ``secret/key`` names the pod's sidecar reported unmounted while running
    ``version``; None when it has not reported on that version."""
    annotations = pod["metadata"].get("annotations") or {}
    value = annotations.get(MISSING_KEYS_ANNOTATION)
    if value is None or annotations.get(VERSION_ANNOTATION) != version:
        return None
    return {name for name in value.split(",") if name}


def missing_keys_annotations(version: str, missing: Iterable[tuple[str, str]]) -> dict[str, str]:
    """What to annotate a pod with once its sidecar runs ``version`` and reported ``missing``
    (secret, key) pairs: the two annotations ``reported_missing_keys`` reads."""
    names = ",".join(sorted({f"{secret}/{key}" for secret, key in missing}))
    return {VERSION_ANNOTATION: version, MISSING_KEYS_ANNOTATION: names}


def alive(body: Body) -> bool:
    """Not being deleted (a terminating pod no longer counts as one of its workload's)."""
    return not body["metadata"].get("deletionTimestamp")


def pod_workload(pod: Body) -> str | None:
    return (pod["metadata"].get("labels") or {}).get(WORKLOAD_LABEL)


@dataclass(frozen=True)
class Workload:
    """An opted-in workload as the operator sees it: a Deployment, or the injected pods of
    anything else (a StatefulSet, a Job, bare Pods) grouped by their workload label."""

    name: str
    annotations: Mapping[str, str]
    labels: Mapping[str, str]  # of the pod template: what policy and budget selectors match
    template_annotations: Mapping[str, str]
    pods: list[Body] = field(default_factory=list)  # its injected pods, when read
    uid: str = ""  # the Deployment's; empty for pods grouped by their workload label only

    @classmethod
    def from_deployment(cls, body: Body) -> Workload:
        template = body["spec"]["template"].get("metadata") or {}
        return cls(
            name=body["metadata"]["name"],
            annotations=body["metadata"].get("annotations") or {},
            labels=template.get("labels") or {},
            template_annotations=template.get("annotations") or {},
            uid=body["metadata"]["uid"],
        )

    @classmethod
    def from_pod(cls, name: str, pod: Body) -> Workload:
        """The workload of pods that are not an opted-in Deployment's, from its first pod."""
        return cls(name, {}, pod["metadata"].get("labels") or {}, {})

    @property
    def is_deployment(self) -> bool:
        return bool(self.uid)

    def owner_references(self) -> list[Body]:
        """Makes the workload own what the operator makes for it (its ConfigMap), so the
        garbage collector deletes that with it. Not blocking the owner's deletion: that
        would need ``update`` on ``deployments/finalizers`` where the API server enforces
        owner-reference permissions, and its Pods mount the ConfigMap as optional anyway.
        Pods grouped by their label are owned by their controllers (a StatefulSet, a Job),
        bare pods by themselves: the ConfigMap goes once the last of them does."""
        if self.is_deployment:
            return [self._reference("apps/v1", "Deployment", self.name, self.uid, True)]
        owners: dict[str, Body] = {}
        for pod in self.pods:
            metadata = pod["metadata"]
            refs = [r for r in metadata.get("ownerReferences") or [] if r.get("controller")]
            for ref in refs or [{"apiVersion": "v1", "kind": "Pod", **metadata}]:
                owners.setdefault(
                    ref["uid"],
                    self._reference(ref["apiVersion"], ref["kind"], ref["name"], ref["uid"], False),
                )
        return list(owners.values())

    @staticmethod
    def _reference(api_version: str, kind: str, name: str, uid: str, controller: bool) -> Body:
        return {
            "apiVersion": api_version,
            "kind": kind,
            "name": name,
            "uid": uid,
            "controller": controller,
            "blockOwnerDeletion": False,
        }

    @property
    def wants_injection(self) -> bool:
        """The user's gesture: ``sluice.dev/inject=true`` on the Deployment itself."""
        return self.annotations.get(INJECT_ANNOTATION) == "true"

    @property
    def template_injected(self) -> bool:
        return self.template_annotations.get(INJECT_ANNOTATION) == "true"

    @property
    def template_opted_out(self) -> bool:
        """``sluice.dev/inject: "false"`` on the pod template (annotation or label)."""
        return "false" in (
            self.template_annotations.get(INJECT_ANNOTATION),
            self.labels.get(INJECT_ANNOTATION),
        )

    def opted_in(self, namespace_labels: Mapping[str, str]) -> bool:
        """Any gesture: the Deployment's annotation, its pod template's annotation or label,
        or the namespace label."""
        gestures = (
            self.annotations.get(INJECT_ANNOTATION),
            self.template_annotations.get(INJECT_ANNOTATION),
            self.labels.get(INJECT_ANNOTATION),
        )
        return opted_in_by(gestures, namespace_labels)


@dataclass(frozen=True)
class OptInChange:
    """The merge patch that copies (or removes) the opt-in gesture into the pod template."""

    patch: Body
    description: str


def opt_in_change(workload: Workload) -> OptInChange | None:
    """What to patch when the Deployment's annotation and its pod template disagree.

    The pod template's explicit opt-out wins: its "false" is the user's, neither overwritten
    by the Deployment's "true" nor removed with the operator's own copy."""
    if workload.template_opted_out:
        return None
    managed = workload.annotations.get(MANAGED_ANNOTATION) == "true"
    if workload.wants_injection and not workload.template_injected:
        # Copy the user's gesture into the pod template: a rollout creates injected pods.
        return OptInChange(_opt_in_patch("true"), "opted in: rolling out with the sidecar")
    if not workload.wants_injection and managed:
        return OptInChange(_opt_in_patch(None), "opted out: rolling out without the sidecar")
    return None


def _opt_in_patch(value: str | None) -> Body:
    return {
        "metadata": {"annotations": {MANAGED_ANNOTATION: value}},
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {INJECT_ANNOTATION: value},
                    "labels": {INJECT_ANNOTATION: value},
                }
            }
        },
    }


def key_secrets_patch(value: str) -> Body:
    """Pod-template annotation naming the provider-key Secrets (a change rolls the pods)."""
    return {
        "spec": {"template": {"metadata": {"annotations": {KEY_SECRETS_ANNOTATION: value or None}}}}
    }
