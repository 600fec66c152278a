"""Broken provider settings are refused when the configuration arrives, not at every call.

Through ``PUT /admin/config`` (what the operator pushes) and through a standalone policy
folder; the running configuration stays in both cases.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sluice_sidecar.api.server import load_policy_dir
from sluice_sidecar.contract.model import ConfigRejected
from tests.support.sidecar import (
    SidecarHandle,
    close_test_sidecar,
    policy,
    provider_for,
    start_test_sidecar,
)
from tests.support.simulator import SimulatedLLM

BROKEN = [
    ({"authHeader": "api key"}, "authHeader must be an HTTP header name"),
    ({"headers": {"api-version": "1\r\nX-Injected: 1"}}, "control characters"),
    ({"baseUrl": "http://127.0.0.1:99999/v1"}, "Port out of range"),
    ({"baseUrl": "http://[::1/v1"}, "not a valid URL"),
    ({"baseUrl": "file:///etc/passwd"}, "baseUrl"),
]


@pytest.mark.parametrize(("fields", "needle"), BROKEN)
async def test_put_config_refuses_broken_provider_settings(
    sidecar: SidecarHandle, fields: dict, needle: str
) -> None:
    _, before = await sidecar.admin("GET", "/admin/config")
    document = before["config"]
    document["providers"][0] |= fields
    status, body = await sidecar.admin("PUT", "/admin/config", json=document)
    assert status in (400, 422)
    assert any(needle in problem for problem in body["problems"]), body["problems"]
    _, after = await sidecar.admin("GET", "/admin/config")
    assert after["version"] == before["version"]


async def test_put_config_refuses_a_key_file_outside_the_secrets_dir(
    llm: SimulatedLLM, sidecar_factory, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    token_file = tmp_path / "admin-token"
    token_file.write_text("the-admin-token")
    sidecar = await sidecar_factory(policy(providers=[provider_for(llm)]), secrets_dir=secrets)
    _, current = await sidecar.admin("GET", "/admin/config")
    document = current["config"]
    document["providers"][0]["apiKeyFile"] = str(token_file)
    status, body = await sidecar.admin("PUT", "/admin/config", json=document)
    assert status == 400
    assert "outside the secrets directory" in body["problems"][0]
    assert "the-admin-token" not in str(body)
    assert llm.requests == []


@pytest.mark.parametrize(("fields", "needle"), BROKEN)
async def test_policy_folder_with_broken_provider_settings_is_refused(
    llm: SimulatedLLM, tmp_path: Path, fields: dict, needle: str
) -> None:
    good = policy(providers=[provider_for(llm)])
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(good))
    sidecar = await start_test_sidecar(policy_dir=tmp_path, watch=False)
    try:
        version = sidecar.state.version
        assert version is not None
        broken = policy(providers=[provider_for(llm) | fields])
        (tmp_path / "policy.yaml").write_text(yaml.safe_dump(broken))
        with pytest.raises(ConfigRejected) as caught:
            load_policy_dir(sidecar.state, tmp_path)
        assert any(needle in problem for problem in caught.value.problems)
        assert "policy.yaml" in caught.value.problems[0]
        assert sidecar.state.version == version
    finally:
        await close_test_sidecar(sidecar)
