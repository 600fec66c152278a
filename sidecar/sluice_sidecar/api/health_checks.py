"""Active health checks: an open circuit's provider is probed, so recovery need not wait for
user traffic (``circuitBreaker.healthCheck``, off by default).

A task of the data app looks every ``intervalSeconds`` for open breakers and sends their
provider one cheap ``GET`` (``/models`` under its base URL by default, with the provider's key
and headers) through the transport. ``successThreshold`` probes answered 2xx in a row close the
provider's open breakers (as ``POST /admin/circuits/reset`` would); a failed probe starts the
count again. Half-open trial calls work as before: whichever comes first closes the circuit.
Each probe is bounded by the interval; probes never count in the breaker's window.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from sluice_sidecar.errors import UpstreamError
from sluice_sidecar.pipeline.runtime import Provider
from sluice_sidecar.resilience.breaker import CircuitBreaker, State
from sluice_sidecar.service.state import SidecarState
from sluice_sidecar.transports.base import UpstreamRequest

logger = logging.getLogger("sluice.breaker")
ANTHROPIC_VERSION = "2023-06-01"


class HealthChecks:
    def __init__(self, state: SidecarState) -> None:
        self._state = state
        self._good: dict[str, int] = {}  # provider -> probes answered in a row

    async def run(self) -> None:
        while True:
            runtime = self._state.runtime
            spec = runtime.config.circuit_breaker if runtime is not None else None
            if runtime is None or spec is None or not spec.health_check.enabled:
                await self._state.next_version()  # only a new configuration can turn them on
                continue
            interval = spec.health_check.interval_seconds
            await asyncio.sleep(interval)
            providers = {p.name: p for p in runtime.providers}
            for name, breakers in self._open_by_provider().items():
                provider = providers.get(name)
                if provider is not None:
                    ok = await self._probe(provider, spec.health_check.path, interval)
                    self._count(provider, breakers, ok, spec.success_threshold)

    def _open_by_provider(self) -> dict[str, list[CircuitBreaker]]:
        found: dict[str, list[CircuitBreaker]] = {}
        for breaker in self._state.breakers.all():
            if breaker.state is State.OPEN:
                found.setdefault(breaker.key.provider, []).append(breaker)
        for name in set(self._good) - set(found):
            del self._good[name]  # closed meanwhile: the next opening counts afresh
        return found

    async def _probe(self, provider: Provider, path: str, limit_s: float) -> bool:
        root = provider.base_url + ("/v1" if provider.family == "anthropic" else "")
        headers = {**provider.extra_headers, **provider.auth_headers}
        if provider.family == "anthropic":
            headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
        request = UpstreamRequest(
            "GET", root + path, headers, None, False, tuple(provider.auth_headers.values())
        )
        try:
            async with asyncio.timeout(limit_s):
                reply = await self._state.transport.send(request)
        except (UpstreamError, TimeoutError) as error:
            logger.info("health check of %s failed: %s", provider.display_name, error)
            return False
        reply.close()
        return True

    def _count(
        self, provider: Provider, breakers: list[CircuitBreaker], ok: bool, needed: int
    ) -> None:
        good = self._good[provider.name] = self._good.get(provider.name, 0) + 1 if ok else 0
        if good < needed:
            return
        for breaker in breakers:
            breaker.reset(f"closed by {good} passed health checks")
        del self._good[provider.name]
        logger.info("circuit %s closed: %d health checks answered", provider.name, good)


def health_check_lifespan(state: SidecarState) -> Callable[[object], AsyncIterator[None]]:
    """An aiohttp cleanup context running the health checks while the data app serves."""

    async def lifespan(app: object) -> AsyncIterator[None]:
        task = asyncio.create_task(HealthChecks(state).run(), name="sluice-health-checks")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return lifespan
