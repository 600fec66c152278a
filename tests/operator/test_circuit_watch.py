"""The circuit watch polling a real sidecar's transition log: what it posts, where it keeps its
place, a sidecar that restarted, a pod gone before its place is kept. The API reads are the
in-memory fake's; the Events are collected instead of written (``test_circuit_events.py`` in
``e2e/`` writes them to a real API server)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from sluice_operator.circuit_events import CURSOR_ANNOTATION, CircuitWatch
from sluice_operator.event_series import EventSeries, Occurrence
from sluice_operator.pusher import Pusher
from sluice_operator.settings import OperatorSettings
from tests.operator.fake_kube import NAMESPACE, OPENAI, FakeKube, deployment, pod, policy
from tests.proxy.conftest import sidecar_factory
from tests.support.sidecar import ADMIN_TOKEN, SidecarHandle
from tests.support.simulator import SimulatedLLM

__all__ = ["sidecar_factory"]


@dataclass
class PollableKube(FakeKube):
    annotated: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)

    async def read_admin_token(self, namespace: str, name: str) -> str | None:
        return ADMIN_TOKEN

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        if name in self.gone:
            raise ApiException(status=404, reason="Not Found")
        self.annotated.append((name, annotations))
        for body in self.pods_:
            if body["metadata"]["name"] == name:
                body["metadata"]["annotations"].update(annotations)


class CollectedSeries(EventSeries):
    def __init__(self) -> None:
        super().__init__(kube=None)  # type: ignore[arg-type]  # never writes
        self.occurrences: list[Occurrence] = []

    def add(self, occurrence: Occurrence) -> None:
        self.occurrences.append(occurrence)

    async def flush(self) -> None:
        return None


@pytest.fixture
async def watched(sidecar_factory, llm: SimulatedLLM) -> Any:
    sidecar: SidecarHandle = await sidecar_factory()
    kube = PollableKube(
        policies_=[policy("gateway", {"providers": [OPENAI]})],
        deployments_=[deployment("studio", {"app": "studio"})],
        pods_=[pod("studio-1", "studio")],
    )
    settings = OperatorSettings(
        admin_host_override="127.0.0.1", admin_port=sidecar.running.admin_port, push_timeout_s=5
    )
    pusher = Pusher(settings)
    await pusher.start()
    series = CollectedSeries()
    # usage_interval_s near zero: every collect() call is a round of its own.
    watch = CircuitWatch(
        kube, pusher, settings.model_copy(update={"usage_interval_s": 1e-9}), series
    )
    yield sidecar, kube, watch, series
    await pusher.close()


def trip(sidecar: SidecarHandle) -> None:
    breaker = sidecar.state.breakers.get("openai", "gpt-4o")
    for _ in range(breaker.spec.failure_threshold):
        breaker.record_failure()


async def test_each_change_is_posted_once_and_the_place_kept_on_the_pod(watched) -> None:
    sidecar, kube, watch, series = watched
    trip(sidecar)
    await watch.collect(NAMESPACE)
    (opened,) = series.occurrences
    assert opened.target["metadata"]["name"] == "gateway" and opened.reason == "CircuitOpened"
    log_id = sidecar.state.breakers.transitions.log_id
    assert kube.annotated == [("studio-1", {CURSOR_ANNOTATION: f"{log_id}:1"})]
    await watch.collect(NAMESPACE)  # nothing new: nothing posted, nothing written
    assert len(series.occurrences) == 1 and len(kube.annotated) == 1
    sidecar.state.breakers.reset()
    await watch.collect(NAMESPACE)
    assert [o.reason for o in series.occurrences] == ["CircuitOpened", "CircuitClosed"]
    assert kube.annotated[-1] == ("studio-1", {CURSOR_ANNOTATION: f"{log_id}:2"})


async def test_a_restarted_sidecar_is_read_from_its_first_change(watched) -> None:
    sidecar, kube, watch, series = watched
    # The place a previous sidecar process left: its log id, further on than this one's log.
    kube.pods_[0]["metadata"]["annotations"][CURSOR_ANNOTATION] = "0123abcd:40"
    trip(sidecar)
    sidecar.state.breakers.reset()
    await watch.collect(NAMESPACE)
    assert [o.reason for o in series.occurrences] == ["CircuitOpened", "CircuitClosed"]
    log_id = sidecar.state.breakers.transitions.log_id
    assert kube.annotated == [("studio-1", {CURSOR_ANNOTATION: f"{log_id}:2"})]


async def test_a_pod_deleted_before_its_place_is_kept_is_no_error(watched) -> None:
    sidecar, kube, watch, series = watched
    kube.gone.add("studio-1")
    trip(sidecar)
    await watch.collect(NAMESPACE)
    assert len(series.occurrences) == 1 and kube.annotated == []


async def test_a_provider_no_policy_names_is_posted_on_the_pod(watched) -> None:
    sidecar, _, watch, series = watched
    breaker = sidecar.state.breakers.get("vllm", "llama")
    for _ in range(breaker.spec.failure_threshold):
        breaker.record_failure()
    await watch.collect(NAMESPACE)
    (opened,) = series.occurrences
    assert opened.target["kind"] == "Pod" and opened.target["metadata"]["name"] == "studio-1"
