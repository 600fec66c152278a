"""No provider key reaches the app or the log, whatever the upstream sends back."""

from __future__ import annotations

import logging

import anthropic
import openai
import pytest

from tests.hostile.conftest import leaked, start_hostile_sidecar
from tests.support.hostile_upstream import BEHAVIOUR_HEADER, HostileUpstream
from tests.support.sidecar import SidecarHandle, close_test_sidecar

pytestmark = pytest.mark.asyncio(loop_scope="module")

MESSAGES = [{"role": "user", "content": "Hello"}]
UNPARSEABLE = ["bad-status-line", "bad-header"]


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


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("behaviour", UNPARSEABLE)
async def test_unparseable_answer_gives_a_502_without_the_key(
    hostile_sidecar: SidecarHandle,
    hostile: HostileUpstream,
    caplog: pytest.LogCaptureFixture,
    behaviour: str,
    api: str,
) -> None:
    caplog.set_level(logging.DEBUG, "sluice")
    with pytest.raises((openai.APIStatusError, anthropic.APIStatusError)) as caught:
        await sdk_call(hostile_sidecar, api, behaviour)
    assert leaked(caught.value.response.text) == []
    assert leaked(caplog.text) == []
    assert caught.value.status_code == 502
    assert "upstream connection failed: ClientResponseError 400" in caught.value.message
    sent = hostile.received(behaviour)[-1].headers
    assert sent.get("authorization", sent.get("x-api-key", "")).endswith(("c6a", "e7f"))


async def test_provider_error_quoting_the_key_is_relayed_without_it(
    hostile_sidecar: SidecarHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "sluice")
    client = openai.AsyncOpenAI(
        base_url=hostile_sidecar.openai_url, api_key="sk-app", max_retries=0
    )
    async with client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(
                model="m", messages=MESSAGES, extra_headers={BEHAVIOUR_HEADER: "error-echoes-key"}
            )
    assert leaked(caught.value.response.text) == []
    assert leaked(caplog.text) == []
    assert "Incorrect API key provided: [redacted]" in caught.value.message


async def test_fallback_log_names_the_failure_without_the_key(
    hostile: HostileUpstream, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    sidecar = await start_hostile_sidecar(hostile, tmp_path, openai_providers=2)
    caplog.set_level(logging.DEBUG, "sluice")
    try:
        with pytest.raises(openai.APIStatusError):
            await sdk_call(sidecar, "openai", "bad-header")
    finally:
        await close_test_sidecar(sidecar)
    assert leaked(caplog.text) == []
    assert "falling back from hostile-openai to hostile-openai-2: upstream connection failed" in (
        caplog.text
    )
