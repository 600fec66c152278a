"""Push a compiled configuration to sidecars over their admin API, with bounded concurrency.

``PUT http://<pod IP>:<admin port>/admin/config`` with the namespace's admin token. Connection
errors and 5xx answers are retried with exponential backoff; a 400 (the sidecar refused the
configuration) is final and reported, never retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from sluice_operator.injection import SIDECAR_NAME
from sluice_operator.metrics import OperatorMetrics, PushOutcome
from sluice_operator.settings import OperatorSettings
from sluice_sidecar.contract import pod as pod_contract

logger = logging.getLogger("sluice.operator.push")

ADMIN_PORT_NAME = pod_contract.ADMIN_PORT_NAME  # the injected sidecar's admin containerPort


@dataclass(frozen=True, slots=True)
class PushTarget:
    pod: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class PushResult:
    pod: str
    ok: bool
    attempts: int
    detail: str
    missing_keys: tuple[tuple[str, str], ...] = ()  # (secret, key) the sidecar has not mounted


class Pusher:
    def __init__(self, settings: OperatorSettings, metrics: OperatorMetrics | None = None) -> None:
        self._settings = settings
        self.metrics = metrics or OperatorMetrics()
        self._session: aiohttp.ClientSession | None = None
        self._limit = asyncio.Semaphore(settings.push_concurrency)

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._settings.push_timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request_json(
        self, method: str, target: PushTarget, path: str, token: str, body: bytes | None = None
    ) -> Any | None:
        """One admin API call (no retries: callers run again on the next timer tick)."""
        assert self._session is not None, "Pusher.start() was not awaited"
        url = f"http://{target.host}:{target.port}{path}"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with self._limit:
            try:
                async with self._session.request(method, url, data=body, headers=headers) as answer:
                    if answer.status != 200:
                        logger.warning("%s %s: HTTP %d", method, url, answer.status)
                        return None
                    return orjson.loads(await answer.read())
            except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as error:
                logger.warning("%s %s failed: %s", method, url, error)
                return None

    async def collect_usage(self, target: PushTarget, token: str) -> Any | None:
        """``GET /admin/usage`` of one sidecar (counted: the budgets depend on it)."""
        answer = await self.request_json("GET", target, "/admin/usage", token)
        self.metrics.usage_collection("ok" if isinstance(answer, dict) else "error")
        return answer

    async def push_all(
        self, targets: list[PushTarget], document: bytes, token: str
    ) -> list[PushResult]:
        return await asyncio.gather(*(self._push_one(t, document, token) for t in targets))

    async def _push_one(self, target: PushTarget, document: bytes, token: str) -> PushResult:
        started = time.perf_counter()
        result, outcome = await self._attempts(target, document, token)
        self.metrics.push(outcome, time.perf_counter() - started)
        return result

    async def _attempts(
        self, target: PushTarget, document: bytes, token: str
    ) -> tuple[PushResult, PushOutcome]:
        assert self._session is not None, "Pusher.start() was not awaited"
        url = f"http://{target.host}:{target.port}/admin/config"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        delay = self._settings.push_backoff_s
        detail = ""
        outcome: PushOutcome = "failed"
        attempts = self._settings.push_attempts
        for attempt in range(1, attempts + 1):
            async with self._limit:
                try:
                    async with self._session.put(url, data=document, headers=headers) as answer:
                        body = await answer.read()
                        if answer.status == 200:
                            applied = orjson.loads(body)
                            missing = tuple(
                                (str(k["secret"]), str(k["key"]))
                                for k in applied.get("missingKeys") or []
                            )
                            result = PushResult(
                                target.pod, True, attempt, applied["version"], missing
                            )
                            return result, "ok"
                        detail = f"HTTP {answer.status}: {body[:300].decode(errors='replace')}"
                        if answer.status < 500:
                            outcome = "refused"
                            break  # refused or unauthorized: retrying cannot help
                except (
                    aiohttp.ClientError,
                    TimeoutError,
                    orjson.JSONDecodeError,
                    KeyError,
                    TypeError,
                ) as error:
                    detail = f"{type(error).__name__}: {error}"
            if attempt < attempts:
                await asyncio.sleep(delay)
                delay *= 2
        logger.warning("push to %s (%s) failed: %s", target.pod, url, detail)
        return PushResult(target.pod, False, attempt, detail), outcome


def target_of(pod: dict[str, Any], settings: OperatorSettings) -> PushTarget:
    """Where a pod's sidecar admin API answers: its pod IP (or the tests' override), on the
    port the injected sidecar declares; the setting for a pod that declares none."""
    host = settings.admin_host_override or pod["status"]["podIP"]
    return PushTarget(pod["metadata"]["name"], host, admin_port(pod) or settings.admin_port)


def admin_port(pod: dict[str, Any]) -> int | None:
    """The container port named ``sluice-admin`` of the pod's sidecar (the injector's name for
    it): a pod injected under other settings keeps the port it was given."""
    spec = pod.get("spec") or {}
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        if container.get("name") != SIDECAR_NAME:
            continue
        for port in container.get("ports") or []:
            if port.get("name") == ADMIN_PORT_NAME and isinstance(port.get("containerPort"), int):
                return int(port["containerPort"])
    return None
