"""Start a real sidecar in the test's event loop, configured from policy-shaped dictionaries.

The sidecar serves real HTTP on loopback ports picked by the OS; tests drive it with the official
SDKs. ``VirtualClock`` replaces the breaker's clock so open times pass without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from sluice_sidecar.api.server import RunningSidecar, start_sidecar
from sluice_sidecar.contract import LlmPolicy, SidecarConfig, compile_policies
from sluice_sidecar.service.settings import SidecarSettings
from tests.support.simulator import SimulatedLLM

ADMIN_TOKEN = "test-admin-token"


@dataclass
class VirtualClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def provider_for(sim: SimulatedLLM, name: str | None = None, **extra: Any) -> dict[str, Any]:
    """An openai-compatible provider entry pointing at a simulator."""
    return {
        "name": name or sim.name,
        "type": "openai-compatible",
        "baseUrl": sim.openai_base_url,
    } | extra


def anthropic_provider_for(sim: SimulatedLLM, name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "anthropic", "baseUrl": sim.anthropic_base_url} | extra


def policy(**spec: Any) -> dict[str, Any]:
    """An LlmPolicy document; fast retries unless the test says otherwise."""
    spec.setdefault("retry", {"strategy": "exponential", "baseDelayMs": 1, "maxDelayMs": 5})
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "LlmPolicy",
        "metadata": {"name": "test", "namespace": "tests"},
        "spec": spec,
    }


def compile_policy(document: dict[str, Any]) -> SidecarConfig:
    return compile_policies([LlmPolicy.model_validate(document)])


@dataclass
class SidecarHandle:
    running: RunningSidecar
    clock: VirtualClock
    http: aiohttp.ClientSession
    token: str = ADMIN_TOKEN
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self):
        return self.running.state

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.running.data_port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.running.data_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.running.admin_port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def admin(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = kwargs.pop("headers", self.auth)
        async with self.http.request(
            method, self.admin_url + path, headers=headers, **kwargs
        ) as response:
            body = await response.json(content_type=None)
            return response.status, body

    async def metrics_text(self) -> str:
        async with self.http.get(self.admin_url + "/metrics") as response:
            return await response.text()


async def start_test_sidecar(
    config: SidecarConfig | None = None,
    *,
    policy_dir: Path | None = None,
    **settings: Any,
) -> SidecarHandle:
    settings.setdefault("admin_token", ADMIN_TOKEN)
    clock = VirtualClock()
    running = await start_sidecar(
        SidecarSettings(data_port=0, admin_port=0, policy_dir=policy_dir, **settings), clock=clock
    )
    if config is not None:
        running.state.apply(config, source="test")
    return SidecarHandle(running, clock, aiohttp.ClientSession())


async def close_test_sidecar(handle: SidecarHandle) -> None:
    await handle.http.close()
    await handle.running.close()
