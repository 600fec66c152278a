"""Circuit breaker state changes as Kubernetes Events on the policy, on the real control plane:
a sidecar's provider fails until its circuit opens (a Warning on the LlmPolicy), then recovers
(Normal half-open and closed Events follow); a flapping circuit's Events are folded into
counts and their writes bounded per policy and minute."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from kubernetes_asyncio import config

from e2e.harness import net, processes
from e2e.harness.controlplane import ControlPlane
from e2e.harness.processes import wait_until
from e2e.sluice import SluiceDeployment, sidecar_admin, sidecar_launch
from e2e.workloads import admin_token, deployment, policy, running_sidecars
from sluice_operator.circuit_events import CURSOR_ANNOTATION
from sluice_operator.event_series import EventSeries, Occurrence
from sluice_operator.kube import Kube
from sluice_sidecar.contract.pod import DATA_PORT

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def upstream_port() -> Iterator[int]:
    """A port nothing listens on yet: the provider is down until ``start_simulator``."""
    yield net.free_port()


def start_simulator(port: int, log: Path) -> processes.ManagedProcess:
    proc = processes.ManagedProcess(
        "simulator",
        [sys.executable, "-m", "tests.support.simulator", "--port", str(port)],
        log,
        cwd=ROOT,
    )
    wait_until(lambda: net.accepts_connections("127.0.0.1", port), 20, what="the simulator")
    return proc


def call(slot) -> str | None:
    client_ = openai.OpenAI(
        base_url=f"http://{slot.ip}:{DATA_PORT}/v1", api_key="sk-app", max_retries=0, timeout=10
    )
    with client_:
        answer = client_.chat.completions.create(
            model="sim-model", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    return answer.choices[0].message.content


def policy_events(cp: ControlPlane, namespace: str, name: str) -> list[dict]:
    events = cp.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
    return [
        e
        for e in events
        if e["involvedObject"].get("kind") == "LlmPolicy" and e["involvedObject"]["name"] == name
    ]


def event(cp: ControlPlane, namespace: str, policy_name: str, reason: str, move: str) -> dict:
    """The Event of one change (``move``: "closed -> open"): a failed trial call reopens the
    circuit, a CircuitOpened Event of its own."""
    return wait_until(
        lambda: next(
            (
                e
                for e in policy_events(cp, namespace, policy_name)
                if e["reason"] == reason and f": {move}: " in e["message"]
            ),
            None,
        ),
        30,
        what=f"a {reason} Event ({move}) on LlmPolicy {policy_name}",
    )


def test_a_circuit_that_opens_and_closes_is_told_on_its_policy(
    sluice: SluiceDeployment,
    control_plane: ControlPlane,
    namespace: str,
    fake_kubelet,
    upstream_port: int,
    tmp_path,
) -> None:
    spec = {
        "providers": [
            {
                "name": "sim",
                "type": "openai-compatible",
                "baseUrl": f"http://127.0.0.1:{upstream_port}/v1",
            }
        ],
        "retry": {"maxAttempts": 1},
        "circuitBreaker": {
            "failureThreshold": 2,
            "failureRateThreshold": None,
            "openSeconds": 1,
            "successThreshold": 1,
            "scope": "provider",
        },
    }
    control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input=policy("gateway", "studio", **spec)
    )
    kubelet = fake_kubelet(
        namespace, "sluice.dev/injected=true", sidecar_launch(control_plane, tmp_path)
    )
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=deployment("studio", 1))
    (slot,) = running_sidecars(kubelet, 1)

    def refused() -> bool:
        try:
            call(slot)
        except openai.APIStatusError as error:
            return "is open" in str(error)
        return False

    # Connection refused, twice: the circuit opens, then refuses by itself.
    wait_until(refused, 30, what="the sidecar's circuit to open (the provider is down)")
    opened = event(control_plane, namespace, "gateway", "CircuitOpened", "closed -> open")
    assert opened["type"] == "Warning"
    assert opened["involvedObject"]["uid"]
    assert opened["message"] == (
        f"circuit sim on pod {slot.name}: closed -> open: 2 consecutive failures"
    )
    assert opened["source"]["component"] == "sluice-operator" and opened["count"] == 1

    simulator = start_simulator(upstream_port, tmp_path / "simulator.log")
    try:
        wait_until(lambda: _answers(slot), 30, what="a call through the recovered provider")
        half_open = event(
            control_plane, namespace, "gateway", "CircuitHalfOpen", "open -> half-open"
        )
        closed = event(control_plane, namespace, "gateway", "CircuitClosed", "half-open -> closed")
    finally:
        simulator.stop()
    assert half_open["type"] == closed["type"] == "Normal"
    assert half_open["message"].endswith("a trial call may go")
    assert closed["message"] == (
        f"circuit sim on pod {slot.name}: half-open -> closed: 1 successful trial call(s)"
    )
    # Every change the sidecar logged was posted exactly once (repeats of one change, when the
    # first trial fails, fold into one Event's count), and the pod keeps the place.
    token = admin_token(control_plane, namespace)
    logged = sidecar_admin(slot, token, "/admin/circuits/transitions")
    posted = wait_until(
        lambda: (
            (n := sum(e["count"] for e in policy_events(control_plane, namespace, "gateway")))
            == logged["lastSequence"]
            and n
        ),
        30,
        what="one count per logged change",
    )
    assert posted >= 3
    pod = control_plane.request("GET", f"/api/v1/namespaces/{namespace}/pods/{slot.name}")
    assert pod["metadata"]["annotations"][CURSOR_ANNOTATION] == (
        f"{logged['logId']}:{logged['lastSequence']}"
    )


def _answers(slot) -> bool:
    try:
        return call(slot) is not None
    except openai.APIError:
        return False


def test_a_flapping_circuit_is_folded_into_counts_and_bounded_per_minute(
    sluice: SluiceDeployment, control_plane: ControlPlane, namespace: str
) -> None:
    """The Event writes themselves, against the real API server (the CRDs ``sluice`` installs)."""
    body = control_plane.request(
        "POST",
        f"/apis/sluice.dev/v1alpha1/namespaces/{namespace}/llmpolicies",
        {
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "LlmPolicy",
            "metadata": {"name": "flappy"},
            "spec": {"providers": [{"name": "openai", "type": "openai"}]},
        },
    )
    at = dt.datetime.now(dt.UTC)

    def flap(pod: str, times: int) -> list[Occurrence]:
        key = f"{body['metadata']['uid']}|openai|{pod}|closed|open"
        message = f"circuit openai on pod {pod}: closed -> open: 3 consecutive failures"
        return [Occurrence(body, "Warning", "CircuitOpened", message, key, at)] * times

    async def scenario() -> tuple[int, int]:
        kube = Kube(await config.new_client_from_config(str(control_plane.admin_kubeconfig)))
        now = [0.0]
        series = EventSeries(kube, writes_per_minute=3, monotonic=lambda: now[0])
        try:
            for pod in ("a", "b", "c", "d", "e"):  # five Event series, one target
                for occurrence in flap(pod, 40):
                    series.add(occurrence)
            await series.flush()
            first_round = series.pending()
            now[0] += 61  # a minute later the rest is written, counts whole
            await series.flush()
            for occurrence in flap("a", 10):
                series.add(occurrence)
            now[0] += 61
            await series.flush()
            # A restarted operator knows none of this: its first write adds to the Event.
            again = EventSeries(kube)
            again.add(flap("a", 1)[0])
            await again.flush()
            return first_round, series.pending()
        finally:
            await kube.close()

    deferred, left = asyncio.run(scenario())
    assert deferred == 2 * 40  # three series written, two waiting for the next minute
    assert left == 0
    events = policy_events(control_plane, namespace, "flappy")
    counts = sorted((e["message"].split(" on pod ")[1].split(":")[0], e["count"]) for e in events)
    assert counts == [("a", 51), ("b", 40), ("c", 40), ("d", 40), ("e", 40)]
    assert all(e["type"] == "Warning" and e["reason"] == "CircuitOpened" for e in events)
