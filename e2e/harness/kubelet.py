"""A fake kubelet: it watches the Pods matching a label selector in one namespace, starts a
local process for each (bound to its own loopback address 127.0.0.N), and reports the Pod
Running and Ready with that podIP through the status subresource. When the Pod is deleted
it stops the process. There is no scheduler and no container runtime: the "container" is
whatever argv the test's launch callable returns, which lets later tests run the real
sidecar as a Pod and reach it over HTTP at the Pod's IP.

Used by the ``fake_kubelet`` fixture in ``e2e/conftest.py``.
"""

from __future__ import annotations

import datetime
import random
import threading
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from e2e.harness import net, processes
from e2e.harness.client import ApiClient, ApiError, JsonObject

READY_CONDITIONS = ("PodScheduled", "Initialized", "ContainersReady", "Ready")


@dataclass(frozen=True)
class PodSlot:
    """What a launch callable gets: the Pod's name, namespace, assigned IP and manifest."""

    name: str
    namespace: str
    ip: str
    pod: JsonObject


@dataclass(frozen=True)
class Launch:
    """What a launch callable returns: the command to run for the Pod.

    ``ports``: TCP ports on the Pod IP that must accept connections before the Pod is
    reported Ready; ``None`` means the containerPorts the Pod declares. ``on_stop``: called
    once the process has stopped (e.g. to remove the container it ran in). An empty ``argv``
    runs nothing: the launch callable serves the Pod's ports itself (``standins``, hundreds of
    pods without a process each) and ``on_stop`` ends that.
    """

    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    ports: Sequence[int] | None = None
    cwd: Path | None = None
    on_stop: Callable[[], None] | None = None


LaunchFactory = Callable[[PodSlot], Launch]
# What the fake_kubelet fixture returns: (namespace, label selector, launch) -> started kubelet.
KubeletFactory = Callable[[str, str, LaunchFactory], "FakeKubelet"]


class IpAllocator:
    """Hands out distinct loopback addresses 127.B.0.2, 127.B.0.3, ... for a session.

    ``B`` (the block) is picked at random from 1-99 unless given: Pods bind fixed ports
    (a sidecar's 17100/17190) on their address, so two test runs on one machine must not hand
    out the same ones. 127.0.x.x stays for the control plane and ``controlplane.SERVICE_CIDR``.
    """

    def __init__(self, block: int | None = None) -> None:
        self.block = block if block is not None else random.SystemRandom().randint(1, 99)
        self._count = 0
        self._lock = threading.Lock()

    def allocate(self) -> str:
        """The next unused address: 127.B.0.2 ... 127.B.0.251, then 127.B.1.2 ..."""
        with self._lock:
            n = self._count
            self._count += 1
        return f"127.{self.block}.{n // 250}.{n % 250 + 2}"


@dataclass
class _RunningPod:
    slot: PodSlot
    process: processes.ManagedProcess | None  # None: served in this process (empty argv)
    launch: Launch

    def stop(self) -> None:
        try:
            if self.process is not None:
                self.process.stop(timeout=5)
        finally:
            if self.launch.on_stop is not None:
                self.launch.on_stop()


class FakeKubelet:
    """Plays kubelet for ``namespace`` Pods matching ``selector`` (e.g. ``app=demo``)."""

    def __init__(
        self,
        api: ApiClient,
        namespace: str,
        selector: str,
        launch: LaunchFactory,
        log_dir: Path,
        ips: IpAllocator,
        ready_timeout: float = 30.0,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.selector = selector
        self.launch = launch
        self.log_dir = log_dir
        self.ips = ips
        self.ready_timeout = ready_timeout
        self.errors: list[str] = []
        self._pods: dict[str, _RunningPod] = {}  # by Pod uid
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"fake-kubelet-{namespace}-{selector}", daemon=True
        )

    # -- public API ------------------------------------------------------------------

    def start(self) -> FakeKubelet:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop every Pod process; the watch thread ends at its next wake-up."""
        with self._lock:
            self._stopped.set()
            running = list(self._pods.values())
            self._pods.clear()
        for pod in running:
            pod.stop()

    def slots(self) -> dict[str, PodSlot]:
        """Pods currently run by this kubelet, by Pod name."""
        with self._lock:
            return {p.slot.name: p.slot for p in self._pods.values()}

    def wait_for_pod(self, name: str, timeout: float = 30.0) -> PodSlot:
        """Wait until Pod ``name`` runs here (its process started, status reported)."""
        return processes.wait_until(
            lambda: self._check_errors() or self.slots().get(name),
            timeout,
            what=f"fake kubelet to run pod {self.namespace}/{name}",
        )

    def process(self, name: str) -> processes.ManagedProcess | None:
        with self._lock:
            return next((p.process for p in self._pods.values() if p.slot.name == name), None)

    def _check_errors(self) -> None:
        if self.errors:
            raise RuntimeError("fake kubelet: " + "; ".join(self.errors))

    # -- watch loop ------------------------------------------------------------------

    @property
    def _pods_path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods"

    def _run(self) -> None:
        resource_version: str | None = None
        while not self._stopped.is_set():
            try:
                if resource_version is None:
                    listing = self.api.get(self._pods_path, labelSelector=self.selector)
                    for pod in listing["items"]:
                        self._handle("ADDED", pod)
                    resource_version = listing["metadata"]["resourceVersion"]
                for event in self.api.watch(
                    self._pods_path,
                    resource_version,
                    timeout_seconds=5,
                    labelSelector=self.selector,
                ):
                    if self._stopped.is_set():
                        return
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        resource_version = None  # 410 Gone or similar: list again
                        break
                    resource_version = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._handle(event["type"], obj)
            except (ApiError, OSError) as exc:
                if self._stopped.is_set():
                    return
                self.errors.append(f"watch failed: {exc}")
                resource_version = None
                self._stopped.wait(1.0)

    def _handle(self, kind: str, pod: JsonObject) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        if kind == "DELETED" or meta.get("deletionTimestamp"):
            self._terminate(uid, meta["name"], force_delete=kind != "DELETED")
            return
        with self._lock:
            if self._stopped.is_set() or uid in self._pods:
                return
        try:
            self._run_pod(pod)
        except Exception as exc:  # report, keep serving other Pods
            self.errors.append(f"pod {meta['name']}: {exc}")

    def _run_pod(self, pod: JsonObject) -> None:
        meta = pod["metadata"]
        slot = PodSlot(meta["name"], self.namespace, self.ips.allocate(), pod)
        launch = self.launch(slot)
        proc = None
        if launch.argv:
            proc = processes.ManagedProcess(
                f"pod-{self.namespace}-{slot.name}",
                launch.argv,
                self.log_dir / f"pod-{self.namespace}-{slot.name}.log",
                env={
                    "POD_NAME": slot.name,
                    "POD_NAMESPACE": self.namespace,
                    "POD_IP": slot.ip,
                    **launch.env,
                },
                cwd=launch.cwd,
                # The watch thread outlives its processes (stop() ends them first), so the
                # kernel only uses this when the test process is killed outright.
                die_with_parent=True,
            )
        with self._lock:
            if self._stopped.is_set():
                _RunningPod(slot, proc, launch).stop()
                return
            self._pods[meta["uid"]] = _RunningPod(slot, proc, launch)
        ports = launch.ports if launch.ports is not None else _container_ports(pod)
        try:
            processes.wait_until(
                lambda: _listening(proc, slot.ip, ports),
                self.ready_timeout,
                what=f"pod {slot.name} process to listen on {slot.ip}:{list(ports)}",
            )
        except (TimeoutError, RuntimeError) as exc:
            self._patch_status(slot, _failed_status(str(exc), proc.tail(10) if proc else ""))
            raise
        self._patch_status(slot, _running_status(pod, slot.ip))

    def _terminate(self, uid: str, name: str, force_delete: bool) -> None:
        with self._lock:
            running = self._pods.pop(uid, None)
        if running:
            running.stop()
        if force_delete:
            # Finish a graceful deletion the way a kubelet does once containers are gone.
            path = f"{self._pods_path}/{urllib.parse.quote(name)}"
            try:
                self.api.delete(path, gracePeriodSeconds=0)
            except ApiError as exc:
                if exc.status != 404:
                    raise

    def _patch_status(self, slot: PodSlot, status: JsonObject) -> None:
        self.api.patch(
            f"{self._pods_path}/{urllib.parse.quote(slot.name)}/status", {"status": status}
        )


def _container_ports(pod: JsonObject) -> list[int]:
    return [
        int(port["containerPort"])
        for container in pod["spec"].get("containers", [])
        for port in container.get("ports", [])
        if port.get("protocol", "TCP") == "TCP"
    ]


def _listening(proc: processes.ManagedProcess | None, ip: str, ports: Sequence[int]) -> bool:
    if proc is not None and not proc.running():
        raise RuntimeError(f"process exited with {proc.popen.returncode}")
    return all(net.accepts_connections(ip, port) for port in ports)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _running_status(pod: JsonObject, ip: str) -> JsonObject:
    now = _now()
    return {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "startTime": now,
        "conditions": [
            {"type": t, "status": "True", "lastTransitionTime": now} for t in READY_CONDITIONS
        ],
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            }
            for c in pod["spec"].get("containers", [])
        ],
    }


def _failed_status(reason: str, log_tail: str) -> JsonObject:
    return {
        "phase": "Failed",
        "reason": "FakeKubeletStartError",
        "message": f"{reason}\n{log_tail}"[-1000:],
    }
