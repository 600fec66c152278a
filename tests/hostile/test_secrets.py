"""No provider key reaches the app or the log, whatever the upstream sends back."""

from __future__ import annotations

import logging

import anthropic
import openai
import pytest

from tests.hostile.conftest import OPENAI_KEY, leaked, sdk_call, start_hostile_sidecar
from tests.support.hostile_upstream import HostileUpstream
from tests.support.sidecar import SidecarHandle, close_test_sidecar

pytestmark = pytest.mark.asyncio(loop_scope="module")

UNPARSEABLE = ["bad-status-line", "bad-header"]


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
    with pytest.raises(openai.AuthenticationError) as caught:
        await sdk_call(hostile_sidecar, "openai", "error-echoes-key")
    assert leaked(caught.value.response.text) == []
    assert leaked(caplog.text) == []
    assert "authorization=[redacted]" in caught.value.message


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


async def test_a_key_under_a_custom_header_is_masked_in_a_relayed_error(
    hostile: HostileUpstream, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    sidecar = await start_hostile_sidecar(hostile, tmp_path, auth_header="x-gateway-key")
    caplog.set_level(logging.DEBUG, "sluice")
    try:
        with pytest.raises(openai.AuthenticationError) as caught:
            await sdk_call(sidecar, "openai", "error-echoes-key")
    finally:
        await close_test_sidecar(sidecar)
    assert hostile.requests[-1].headers["x-gateway-key"] == OPENAI_KEY
    assert leaked(caught.value.response.text) == []
    assert leaked(caplog.text) == []
    assert "x-gateway-key=[redacted]" in caught.value.message
