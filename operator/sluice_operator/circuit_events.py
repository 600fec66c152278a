"""Circuit breaker state changes of the sidecars, as Kubernetes Events on the LlmPolicy.

On a timer, per namespace: ``GET /admin/circuits/transitions?after=N`` of every ready sidecar,
where ``N`` is the last change already posted for that pod. The sidecar keeps its last 256
changes, numbered, so nothing that happened between two polls is lost; the pod annotation
``sluice.dev/circuit-transitions-seen`` (``<logId>:<N>``) keeps the place across operator
restarts and replicas, and a sidecar that restarted (another ``logId``) is read from its start.
Each change becomes an ``Occurrence`` on the policy that configures the provider: the
highest-precedence valid policy selecting the workload that names it (a provider only the
built-in defaults name has no policy: the Event goes on the Pod). ``event_series`` folds
repeats into one Event with a count and bounds the writes per policy and minute.
The annotation is written after the Events: an operator that stops in between posts a change
twice (counted twice), never not at all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Literal

from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sluice_operator.event_series import EventSeries, EventType, Occurrence
from sluice_operator.kube import Body, Kube
from sluice_operator.pusher import Pusher, target_of
from sluice_operator.reading import read_workloads
from sluice_operator.resources import Policy, read_policies
from sluice_operator.rounds import NamespaceRounds
from sluice_operator.selection import policies_for
from sluice_operator.settings import OperatorSettings
from sluice_operator.workloads import Workload, alive, pod_ready
from sluice_sidecar.contract import LlmPolicy, config_problems
from sluice_sidecar.contract.compiler import order_by_precedence

logger = logging.getLogger("sluice.operator.circuits")
CURSOR_ANNOTATION = "sluice.dev/circuit-transitions-seen"
CircuitState = Literal["closed", "half-open", "open"]
# The Event each new state gets: an opening is what someone should look at.
EVENT_OF: Mapping[str, tuple[EventType, str]] = {
    "open": ("Warning", "CircuitOpened"),
    "half-open": ("Normal", "CircuitHalfOpen"),
    "closed": ("Normal", "CircuitClosed"),
}


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class TransitionRow(_Answer):
    sequence: int = Field(ge=1)
    time: dt.datetime
    provider: str = Field(max_length=253)
    model: str = Field(max_length=512)
    from_state: CircuitState = Field(alias="from")
    to_state: CircuitState = Field(alias="to")
    reason: str = Field(max_length=1024)


class TransitionsAnswer(_Answer):
    """What ``GET /admin/circuits/transitions`` answers, bounded as the sidecar bounds it."""

    log_id: str = Field(alias="logId", min_length=1, max_length=64, pattern=r"^[0-9a-zA-Z]+$")
    last_sequence: int = Field(alias="lastSequence", ge=0)
    missed: int = Field(ge=0)
    transitions: list[TransitionRow] = Field(max_length=256)


def cursor_of(pod: Body) -> tuple[str, int]:
    """The log id and the last change posted for this pod; ("", 0) before the first."""
    value = ((pod["metadata"].get("annotations") or {}).get(CURSOR_ANNOTATION)) or ""
    log_id, _, sequence = value.partition(":")
    return (log_id, int(sequence)) if sequence.isdigit() else ("", 0)


def policy_for(policies: list[Policy], workload: Workload, provider: str) -> Body | None:
    """The body of the policy whose provider entry the sidecar runs: the compiler takes
    ``providers`` from the first policy in precedence order that sets them."""
    models = {p.model.identity: p.body for p in policies if p.model is not None}
    selecting: list[LlmPolicy] = policies_for(
        workload.labels, [p.model for p in policies if p.model is not None]
    )
    for model in order_by_precedence(selecting):
        if model.spec.providers is not None:
            if any(entry.name == provider for entry in model.spec.providers):
                return models[model.identity]
            return None  # this policy's providers are the workload's: the provider is not one
    return None


def occurrence(target: Body, pod: Body, row: TransitionRow) -> Occurrence:
    kind, reason = EVENT_OF[row.to_state]
    circuit = row.provider if row.model == "*" else f"{row.provider}/{row.model}"
    pod_name = pod["metadata"]["name"]
    return Occurrence(
        target=target,
        type=kind,
        reason=reason,
        message=f"circuit {circuit} on pod {pod_name}: {row.from_state} -> {row.to_state}: "
        f"{row.reason}",
        key="|".join(
            (target["metadata"].get("uid", ""), circuit, pod_name, row.from_state, row.to_state)
        ),
        at=row.time,
    )


def pod_as_target(pod: Body) -> Body:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod["metadata"]}


class CircuitWatch:
    def __init__(
        self,
        kube: Kube,
        pusher: Pusher,
        settings: OperatorSettings,
        series: EventSeries | None = None,
    ) -> None:
        self.kube = kube
        self.pusher = pusher
        self.settings = settings
        self.series = series or EventSeries(kube)
        self._rounds = NamespaceRounds(settings.usage_interval_s)

    async def collect(self, namespace: str) -> None:
        """Once per interval per namespace, however many policies' timers ask."""
        async with self._rounds.round(namespace) as due:
            if not due:
                return
            token = await self.kube.read_admin_token(namespace, self.settings.admin_token_secret)
            if token is None:
                return
            labels = await self.kube.namespace_labels(namespace) or {}
            workloads = await read_workloads(self.kube, namespace, labels)
            policies = read_policies(b for b in await self.kube.policies(namespace) if alive(b))
            pods = [(w, p) for w in workloads.every() for p in w.pods if pod_ready(p)]
            answers = await asyncio.gather(*(self._read(pod, token) for _, pod in pods))
            cursors: list[tuple[Body, str]] = []
            for (workload, pod), answer in zip(pods, answers, strict=True):
                if answer is None or not answer.transitions:
                    continue
                for row in answer.transitions:
                    target = policy_for(policies, workload, row.provider) or pod_as_target(pod)
                    self.series.add(occurrence(target, pod, row))
                last = answer.transitions[-1].sequence
                cursors.append((pod, f"{answer.log_id}:{last}"))
            await self.series.flush()
            for pod, cursor in cursors:
                await self._keep_place(namespace, pod, cursor)

    async def _keep_place(self, namespace: str, pod: Body, cursor: str) -> None:
        name = pod["metadata"]["name"]
        try:
            await self.kube.annotate_pod(namespace, name, {CURSOR_ANNOTATION: cursor})
        except ApiException as error:  # a pod deleted since the read: nothing left to follow
            if error.status != 404:
                raise
            logger.info("pod %s/%s gone before its circuit place was kept", namespace, name)

    async def _read(self, pod: Body, token: str) -> TransitionsAnswer | None:
        """The pod's changes not posted yet; from its start when its sidecar restarted."""
        log_id, after = cursor_of(pod)
        answer = await self._ask(pod, token, after)
        if answer is not None and log_id and answer.log_id != log_id and after:
            answer = await self._ask(pod, token, 0)  # a new process numbers from 1 again
        if answer is not None and answer.missed:
            logger.warning(
                "pod %s: %d circuit state changes dropped from its log before they were read",
                pod["metadata"]["name"],
                answer.missed,
            )
        return answer

    async def _ask(self, pod: Body, token: str, after: int) -> TransitionsAnswer | None:
        target = target_of(pod, self.settings)
        raw = await self.pusher.request_json(
            "GET", target, f"/admin/circuits/transitions?after={after}", token
        )
        if not isinstance(raw, dict):
            return None  # unreachable, refused, or a sidecar without the log: next round
        try:
            return TransitionsAnswer.model_validate(raw)
        except ValidationError as error:
            problems = "; ".join(config_problems(error))
            logger.warning("circuit changes of pod %s ignored: %s", target.pod, problems)
            return None
