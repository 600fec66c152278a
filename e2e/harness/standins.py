"""Stand-ins for injected sidecars: the admin API the operator talks to, for hundreds of Pods
served by one asyncio loop in a thread of this process (a real sidecar process per Pod would
take a core and gigabytes at 500 Pods).

``StandIns.launch`` is a fake-kubelet launch callable (``kubelet.Launch`` with an empty argv):
it binds the Pod's IP on the admin port its ``sluice-proxy`` container declares and answers
like a sidecar does: ``PUT /admin/config`` (the namespace's admin token, a configuration that
validates as ``SidecarConfig``, answered with its version), ``GET /admin/config``,
``/healthz`` and ``/readyz`` (503 until configured), and ``GET /admin/circuits/transitions``
(an empty log), which ``hold_transitions`` keeps unanswered until ``release_transitions`` (a
slow sidecar, for a test). Every accepted push is recorded with the time it arrived, so a
benchmark reads when each Pod took a version instead of polling.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
import urllib.parse
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import ValidationError

from e2e.harness import processes
from e2e.harness.client import ApiClient
from e2e.harness.kubelet import Launch, PodSlot
from sluice_sidecar.contract import SidecarConfig
from sluice_sidecar.contract.pod import ADMIN_PORT_NAME

T = TypeVar("T")
SIDECAR = "sluice-proxy"


@dataclass
class Applied:
    """One accepted push: the version and when (``time.monotonic()``) it arrived."""

    version: str
    at: float


@dataclass
class _Pod:
    name: str
    namespace: str
    token: str
    site: web.TCPSite
    pushes: list[Applied] = field(default_factory=list)


class StandIns:
    def __init__(self, api: ApiClient) -> None:
        self.api = api
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="stand-ins", daemon=True
        )
        self._pods: dict[tuple[str, int], _Pod] = {}  # by the (IP, port) a request came to
        self._versions: dict[bytes, str] = {}  # document -> version, each validated once
        self._tokens: dict[tuple[str, str], str] = {}  # (namespace, Secret) -> admin token
        self._changed = threading.Condition()
        self._runner: web.AppRunner | None = None
        self._hold: asyncio.Event | None = None  # set: the transitions log answers again
        self.transitions_held = threading.Event()  # a transitions request is being held

    def start(self) -> StandIns:
        self._thread.start()
        app = web.Application()
        app.router.add_put("/admin/config", self._put_config)
        app.router.add_get("/admin/config", self._get_config)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/admin/circuits/transitions", self._get_transitions)
        self._runner = web.AppRunner(app, access_log=None)
        self._call(self._runner.setup())
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._call(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # -- the kubelet's side ----------------------------------------------------------------

    def launch(self, slot: PodSlot) -> Launch:
        port = admin_port(slot)
        assert self._runner is not None, "StandIns.start() was not called"
        site = web.TCPSite(self._runner, slot.ip, port)
        pod = _Pod(slot.name, slot.namespace, self._token(slot), site)
        self._call(site.start())
        with self._changed:
            self._pods[(slot.ip, port)] = pod
        return Launch(argv=(), ports=[port], on_stop=lambda: self._unbind(slot.ip, port))

    def _unbind(self, ip: str, port: int) -> None:
        with self._changed:
            pod = self._pods.pop((ip, port), None)
        if pod is not None:
            self._call(pod.site.stop())

    def _token(self, slot: PodSlot) -> str:
        """The admin token the kubelet would mount from the Pod's ``sluice-admin-token``."""
        volumes = {v["name"]: v for v in slot.pod["spec"].get("volumes", [])}
        secret = volumes["sluice-admin-token"]["secret"]["secretName"]
        key = (slot.namespace, secret)
        if key not in self._tokens:
            path = f"/api/v1/namespaces/{slot.namespace}/secrets/{urllib.parse.quote(secret)}"
            # The operator makes it on the namespace's first reconcile, maybe just after.
            found = processes.wait_until(
                lambda: self.api.exists(path) and self.api.get(path), 30, what=f"Secret {secret}"
            )
            self._tokens[key] = base64.b64decode(found["data"]["token"]).decode()
        return self._tokens[key]

    def hold_transitions(self) -> None:
        """From now on, requests for the transitions log wait for ``release_transitions``."""
        self.transitions_held.clear()
        self._hold = self._call(_new_event())

    def release_transitions(self) -> None:
        hold, self._hold = self._hold, None
        if hold is not None:
            self._loop.call_soon_threadsafe(hold.set)

    # -- what a benchmark reads ------------------------------------------------------------

    def applied(self) -> dict[str, list[Applied]]:
        """Every pod's accepted pushes, by pod name."""
        with self._changed:
            return {p.name: list(p.pushes) for p in self._pods.values()}

    def wait_for(
        self, names: Collection[str], done: Callable[[str], bool], timeout: float
    ) -> dict[str, Applied]:
        """Block until each named pod's latest push has a version ``done(version)`` accepts;
        then each one's first push of such a version."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = {
                    p.name: next(a for a in p.pushes if done(a.version))
                    for p in self._pods.values()
                    if p.name in names and p.pushes and done(p.pushes[-1].version)
                }
                if len(found) == len(names):
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(found)}/{len(names)} stand-ins applied")
                self._changed.wait(left)

    # -- the admin API ---------------------------------------------------------------------

    def _pod(self, request: web.Request) -> _Pod:
        ip, port = request.transport.get_extra_info("sockname")[:2]  # type: ignore[union-attr]
        return self._pods[(ip, port)]

    async def _put_config(self, request: web.Request) -> web.Response:
        pod = self._pod(request)
        if request.headers.get("Authorization") != f"Bearer {pod.token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        document = await request.read()
        version = self._versions.get(document)
        if version is None:
            try:
                version = SidecarConfig.model_validate_json(document).content_hash()
            except ValidationError as error:
                return web.json_response({"error": str(error)[:500]}, status=400)
            self._versions[document] = version
        with self._changed:
            pod.pushes.append(Applied(version, time.monotonic()))
            self._changed.notify_all()
        return web.json_response({"version": version})

    async def _get_config(self, request: web.Request) -> web.Response:
        pod = self._pod(request)
        if request.headers.get("Authorization") != f"Bearer {pod.token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response({"version": pod.pushes[-1].version if pod.pushes else None})

    async def _get_transitions(self, request: web.Request) -> web.Response:
        pod = self._pod(request)
        if request.headers.get("Authorization") != f"Bearer {pod.token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        if (hold := self._hold) is not None:
            self.transitions_held.set()
            await hold.wait()
        return web.json_response(
            {"logId": "standin", "lastSequence": 0, "missed": 0, "transitions": []}
        )

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        ready = bool(self._pod(request).pushes)
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)


async def _new_event() -> asyncio.Event:
    return asyncio.Event()  # made in the stand-ins' loop, which waits on it


def admin_port(slot: PodSlot) -> int:
    """The admin containerPort the injector gave the Pod's sidecar."""
    spec = slot.pod["spec"]
    for container in spec.get("initContainers", []) + spec["containers"]:
        if container["name"] == SIDECAR:
            for port in container.get("ports", []):
                if port.get("name") == ADMIN_PORT_NAME:
                    return int(port["containerPort"])
    raise ValueError(f"pod {slot.name} has no {SIDECAR} container with a {ADMIN_PORT_NAME} port")
