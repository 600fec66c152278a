"""Play kube-proxy for Services: their ClusterIPs are loopback addresses
(``controlplane.SERVICE_CIDR``), and this forwards each connection to a ready Pod behind the
Service, at the Pod's 127.0.0.N and the port its ``targetPort`` names.

So the API server calls an admission webhook configured with ``clientConfig.service`` (as the
chart ships it) exactly as in a cluster: it resolves the Service to its ClusterIP and port,
and the connection lands on the Pod the fake kubelet runs. Binding the Services' ports
(443 for the webhook) needs root, like the rest of the image work.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from e2e.harness.client import ApiClient, ApiError, JsonObject
from e2e.harness.kubelet import READY_CONDITIONS


@dataclass(frozen=True)
class _Route:
    namespace: str
    selector: str  # label selector of the Service, "k=v,k2=v2"
    target_port: int | str


class ServiceProxy:
    """Forwards ClusterIP:port of every Service with a selector to one of its ready Pods."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api
        self.errors: list[str] = []
        self._servers: dict[tuple[str, int], tuple[_Route, asyncio.Server]] = {}
        self._loop = asyncio.new_event_loop()
        self._stopped = threading.Event()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._watch_thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> ServiceProxy:
        self._loop_thread.start()
        self._watch_thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join(10)

    def routed(self) -> set[tuple[str, int]]:
        """(ClusterIP, port) pairs currently forwarded."""
        return set(self._servers)

    # -- Services ------------------------------------------------------------------------

    def _watch(self) -> None:
        resource_version: str | None = None
        while not self._stopped.is_set():
            try:
                if resource_version is None:
                    listing = self.api.get("/api/v1/services")
                    self._sync(listing["items"])
                    resource_version = listing["metadata"]["resourceVersion"]
                for event in self.api.watch(
                    "/api/v1/services", resource_version, timeout_seconds=5
                ):
                    if self._stopped.is_set():
                        return
                    if event["type"] == "ERROR":
                        resource_version = None
                        break
                    resource_version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        # Simplest correct handling: re-list and converge on the whole set.
                        self._sync(self.api.get("/api/v1/services")["items"])
            except (ApiError, OSError) as exc:
                if self._stopped.is_set():
                    return
                self.errors.append(f"service watch failed: {exc}")
                resource_version = None
                self._stopped.wait(1.0)

    def _sync(self, services: Iterable[JsonObject]) -> None:
        wanted: dict[tuple[str, int], _Route] = {}
        for service in services:
            spec = service["spec"]
            ip = spec.get("clusterIP", "")
            if not ip.startswith("127.") or not spec.get("selector"):
                continue
            selector = ",".join(f"{k}={v}" for k, v in sorted(spec["selector"].items()))
            for port in spec.get("ports", []):
                if port.get("protocol", "TCP") == "TCP":
                    target = port.get("targetPort", port["port"])
                    route = _Route(service["metadata"]["namespace"], selector, target)
                    wanted[(ip, int(port["port"]))] = route
        asyncio.run_coroutine_threadsafe(self._converge(wanted), self._loop).result(10)

    async def _converge(self, wanted: dict[tuple[str, int], _Route]) -> None:
        for address, (route, server) in list(self._servers.items()):
            if wanted.get(address) != route:
                server.close()
                await server.wait_closed()
                del self._servers[address]
        for address, route in wanted.items():
            if address not in self._servers:
                try:
                    server = await asyncio.start_server(
                        lambda r, w, route=route: self._forward(r, w, route), *address
                    )
                except OSError as exc:
                    self.errors.append(f"cannot listen on {address}: {exc}")
                    continue
                self._servers[address] = (route, server)

    async def _close_all(self) -> None:
        await self._converge({})

    # -- connections ---------------------------------------------------------------------

    async def _forward(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, route: _Route
    ) -> None:
        try:
            target = await asyncio.to_thread(self._endpoint, route)
            if target is None:
                self.errors.append(f"no ready pod for {route}")
                return
            upstream_reader, upstream_writer = await asyncio.open_connection(*target)
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        except OSError as exc:
            self.errors.append(f"forwarding for {route} failed: {exc}")
        finally:
            writer.close()

    def _endpoint(self, route: _Route) -> tuple[str, int] | None:
        """A ready Pod of the Service: its IP and the target port as a number."""
        pods = self.api.get(
            f"/api/v1/namespaces/{route.namespace}/pods", labelSelector=route.selector
        )
        for pod in pods["items"]:
            if _ready(pod):
                port = _resolve_port(pod, route.target_port)
                if port is not None:
                    return pod["status"]["podIP"], port
        return None


def _ready(pod: JsonObject) -> bool:
    status = pod.get("status", {})
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    return (
        not pod["metadata"].get("deletionTimestamp")
        and bool(status.get("podIP"))
        and conditions.get(READY_CONDITIONS[-1]) == "True"
    )


def _resolve_port(pod: JsonObject, target: int | str) -> int | None:
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    spec = pod["spec"]
    for container in spec.get("initContainers", []) + spec.get("containers", []):
        for port in container.get("ports", []):
            if port.get("name") == target:
                return int(port["containerPort"])
    return None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(OSError):
            writer.close()
