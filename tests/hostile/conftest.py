"""Fixtures of the hostile-upstream tests: one misbehaving provider and one sidecar per module.

The sidecar has two providers, both the ``HostileUpstream``: an OpenAI-compatible one whose key
comes from an environment variable (``apiKeyEnv``) and an Anthropic one whose key comes from a
Secret file (``apiKeySecretRef``), so every test can check that neither key leaks. Operations
have short deadlines so stalls answer fast; the breaker never opens, so each call meets the
behaviour it asked for.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import pytest_asyncio

from tests.support.hostile_upstream import BEHAVIOUR_HEADER, HostileUpstream
from tests.support.sidecar import (
    SidecarHandle,
    close_test_sidecar,
    compile_policy,
    policy,
    start_test_sidecar,
)
from tests.support.waiting import wait_until

OPENAI_KEY = "sk-hostile-openai-5f3c9a1e7b2d4c6a"
ANTHROPIC_KEY = "sk-ant-hostile-secret-8e1f2a3b4c5d6e7f"
SECRETS = (OPENAI_KEY, ANTHROPIC_KEY)
KEY_ENV = "SLUICE_TEST_HOSTILE_OPENAI_KEY"
DEADLINE_S = 1.0  # short, so stalls answer fast; long enough for a busy machine
MESSAGES = [{"role": "user", "content": "Hello"}]


def hostile_policy(
    upstream: HostileUpstream,
    *,
    openai_providers: int = 1,
    auth_header: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """The policy; ``openai_providers`` > 1 adds fallbacks (``hostile-openai-2``, ...);
    ``auth_header`` is the OpenAI providers' key header instead of ``authorization``."""
    providers: list[dict[str, Any]] = [
        {
            "name": "hostile-openai" + (f"-{n}" if n > 1 else ""),
            "type": "openai-compatible",
            "baseUrl": upstream.openai_base_url,
            "apiKeyEnv": KEY_ENV,
        }
        | ({"authHeader": auth_header} if auth_header else {})
        for n in range(1, openai_providers + 1)
    ]
    providers += [
        {
            "name": "hostile-anthropic",
            "type": "anthropic",
            "baseUrl": upstream.url,
            "apiKeySecretRef": {"name": "anthropic", "key": "apiKey"},
        },
    ]
    spec.setdefault("retry", {"maxAttempts": 2, "baseDelayMs": 1, "maxDelayMs": 2})
    spec.setdefault("defaults", {"timeoutSeconds": DEADLINE_S})
    spec.setdefault("circuitBreaker", {"enabled": False})
    return policy(providers=providers, **spec)


async def start_hostile_sidecar(
    upstream: HostileUpstream,
    secrets_dir: Path,
    *,
    settings: dict[str, Any] | None = None,
    **spec: Any,
) -> SidecarHandle:
    """A sidecar in front of ``upstream`` with both provider keys configured (closed by caller).

    ``spec``: policy fields; ``settings``: ``SidecarSettings`` fields (process limits).
    """
    (secrets_dir / "anthropic").mkdir(parents=True, exist_ok=True)
    (secrets_dir / "anthropic" / "apiKey").write_text(ANTHROPIC_KEY)
    # The key is read when the configuration is applied, then the variable is gone again.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, OPENAI_KEY)
        return await start_test_sidecar(
            compile_policy(hostile_policy(upstream, **spec)),
            secrets_dir=secrets_dir,
            **(settings or {}),
        )


async def sdk_call(sidecar: SidecarHandle, api: str, behaviour: str) -> None:
    """One call through the official SDK of ``api``, asking the upstream for ``behaviour``."""
    headers = {BEHAVIOUR_HEADER: behaviour}
    if api == "openai":
        async with openai.AsyncOpenAI(
            base_url=sidecar.openai_url, api_key="sk-app", max_retries=0
        ) as client:
            await client.chat.completions.create(
                model="m", messages=MESSAGES, extra_headers=headers
            )
        return
    async with anthropic.AsyncAnthropic(
        base_url=sidecar.anthropic_url, api_key="sk-ant-app", max_retries=0
    ) as client:
        await client.messages.create(
            model="m", max_tokens=5, messages=MESSAGES, extra_headers=headers
        )


async def error_from_own_sidecar(
    upstream: HostileUpstream, secrets_dir: Path, behaviour: str, **spec: Any
) -> openai.APIStatusError:
    """The error of one OpenAI call, asking for ``behaviour``, through a sidecar of its own."""
    sidecar = await start_hostile_sidecar(upstream, secrets_dir, **spec)
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk_call(sidecar, "openai", behaviour)
    finally:
        await close_test_sidecar(sidecar)
    return caught.value


def leaked(text: str) -> list[str]:
    """The provider keys (or their long tails) that appear in ``text``."""
    return [key for key in SECRETS if key in text or key[8:] in text]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def hostile() -> AsyncIterator[HostileUpstream]:
    async with HostileUpstream() as upstream:
        yield upstream


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def hostile_sidecar(
    hostile: HostileUpstream, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SidecarHandle]:
    handle = await start_hostile_sidecar(hostile, tmp_path_factory.mktemp("secrets"))
    yield handle
    await close_test_sidecar(handle)


@pytest_asyncio.fixture(loop_scope="module")
async def settled_fds(hostile: HostileUpstream) -> AsyncIterator[None]:
    """Fail the test unless every descriptor it opened is closed again."""
    await wait_until(lambda: hostile.open_connections == 0)
    before = open_fds()
    yield
    await wait_until(lambda: hostile.open_connections == 0 and open_fds() <= before)
