"""No provider key reaches the app or the log, whatever the upstream sends back."""

from __future__ import annotations

import logging

import anthropic
import openai
import pytest

from tests.hostile.conftest import OPENAI_KEY, error_from_own_sidecar, leaked, sdk_call
from tests.support.hostile_upstream import HostileUpstream
from tests.support.sidecar import SidecarHandle

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
    caplog.set_level(logging.DEBUG, "sluice")
    await error_from_own_sidecar(hostile, tmp_path, "bad-header", openai_providers=2)
    assert leaked(caplog.text) == []
    assert "falling back from hostile-openai to hostile-openai-2: upstream connection failed" in (
        caplog.text
    )


async def test_a_key_under_a_custom_header_is_masked_in_a_relayed_error(
    hostile: HostileUpstream, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "sluice")
    error = await error_from_own_sidecar(
        hostile, tmp_path, "error-echoes-key", auth_header="x-gateway-key"
    )
    assert hostile.requests[-1].headers["x-gateway-key"] == OPENAI_KEY
    assert leaked(error.response.text) == []
    assert leaked(caplog.text) == []
    assert error.status_code == 401 and "x-gateway-key=[redacted]" in error.message
