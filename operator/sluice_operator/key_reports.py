"""Sidecars that reported a provider key missing, asked again until it is there.

A push records which keys a sidecar has not mounted (``sluice.dev/missing-keys`` on its pod).
A Secret created afterwards reaches the running Pod when the kubelet refreshes the volume
(about a minute), and the sidecar picks the key up by itself; this check, on the policies'
timer, asks exactly those sidecars (``GET /admin/usage``, its ``missingKeys``) so the policy's
``KeysPresent`` follows without waiting for the next push. Pods with nothing missing are never
asked. Called by ``handlers``.
"""

from __future__ import annotations

import asyncio
import logging

from sluice_operator.injection import INJECTED_LABEL
from sluice_operator.kube import Body, Kube
from sluice_operator.pusher import Pusher, target_of
from sluice_operator.reconcile import Reconciler
from sluice_operator.rounds import NamespaceRounds
from sluice_operator.settings import OperatorSettings
from sluice_operator.workloads import (
    MISSING_KEYS_ANNOTATION,
    VERSION_ANNOTATION,
    missing_keys_annotations,
    pod_ready,
    pod_workload,
)

logger = logging.getLogger("sluice.operator.keys")


class KeyReports:
    def __init__(
        self, kube: Kube, pusher: Pusher, settings: OperatorSettings, reconciler: Reconciler
    ) -> None:
        self.kube = kube
        self.pusher = pusher
        self.settings = settings
        self.reconciler = reconciler
        self._rounds = NamespaceRounds(settings.usage_interval_s)

    async def collect(self, namespace: str) -> None:
        """Once per interval per namespace, however many policies' timers ask."""
        async with self._rounds.round(namespace) as due:
            changed = await self._ask_waiting(namespace) if due else []
        if changed:
            logger.info("%s: keys now mounted in %s", namespace, ", ".join(changed))
            await self.reconciler.reconcile(namespace)

    async def _ask_waiting(self, namespace: str) -> list[str]:
        """The pods whose sidecars' missing keys changed since their push."""
        pods = await self.kube.pods(namespace, f"{INJECTED_LABEL}=true")
        waiting = [p for p in pods if pod_ready(p) and _annotations(p).get(MISSING_KEYS_ANNOTATION)]
        if not waiting:
            return []
        token = await self.kube.read_admin_token(namespace, self.settings.admin_token_secret)
        if token is None:
            return []
        return [p for p in await asyncio.gather(*(self._ask(p, token) for p in waiting)) if p]

    async def _ask(self, pod: Body, token: str) -> str | None:
        """The pod's name when its sidecar's missing keys changed (and are recorded)."""
        answer = await self.pusher.request_json(
            "GET", target_of(pod, self.settings), "/admin/usage", token
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("missingKeys"), list):
            return None
        pairs = [(str(k.get("secret")), str(k.get("key"))) for k in answer["missingKeys"]]
        annotations = _annotations(pod)
        version = annotations.get(VERSION_ANNOTATION, "")
        wanted = missing_keys_annotations(version, pairs)
        if wanted[MISSING_KEYS_ANNOTATION] == annotations.get(MISSING_KEYS_ANNOTATION):
            return None
        meta = pod["metadata"]
        await self.kube.annotate_pod(meta["namespace"], meta["name"], wanted)
        names = {name for name in wanted[MISSING_KEYS_ANNOTATION].split(",") if name}
        self.reconciler.keys_reported(
            meta["namespace"], pod_workload(pod) or "", meta["uid"], names
        )
        return str(meta["name"])


def _annotations(pod: Body) -> dict[str, str]:
    return pod["metadata"].get("annotations") or {}
