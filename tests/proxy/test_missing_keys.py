"""The sidecar says which provider keys its configuration names that the Pod has not mounted
(service/provider_keys.py through the admin API): the operator, which never reads a Secret,
learns it from ``missingKeys``. Names only, never a value."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from sluice_sidecar.service.provider_keys import KeyWatch
from tests.proxy.conftest import SidecarFactory
from tests.support.sidecar import compile_policy, policy, provider_for
from tests.support.simulator import SimulatedLLM

MISSING = {"provider": "keyed", "secret": "openai-creds", "key": "apiKey"}
MESSAGES = [{"role": "user", "content": "hello"}]


def keyed_config(llm: SimulatedLLM) -> dict:
    ref = {"name": "openai-creds", "key": "apiKey"}
    providers = [provider_for(llm), provider_for(llm, "keyed", apiKeySecretRef=ref)]
    return compile_policy(policy(providers=providers)).model_dump(mode="json", by_alias=True)


def mount(secrets_dir: Path, value: str) -> Path:
    path = secrets_dir / "openai-creds" / "apiKey"
    path.parent.mkdir(exist_ok=True)
    path.write_text(value)
    return path


async def test_a_configuration_naming_an_unmounted_key_names_it_in_the_answer(
    llm: SimulatedLLM, sidecar_factory: SidecarFactory, tmp_path: Path
) -> None:
    sidecar = await sidecar_factory(secrets_dir=tmp_path)
    document = keyed_config(llm)
    _, answer = await sidecar.admin("PUT", "/admin/config", json=document)
    assert answer["missingKeys"] == [MISSING]
    mount(tmp_path, "")  # an empty key is no key
    _, answer = await sidecar.admin("PUT", "/admin/config", json=document)
    assert answer["missingKeys"] == [MISSING]
    mount(tmp_path, "sk-mounted-later")
    status, answer = await sidecar.admin("PUT", "/admin/config", json=document)
    assert status == 200 and "missingKeys" not in answer  # named only when some are
    assert "sk-mounted-later" not in str(answer)


async def test_usage_names_a_key_whose_file_went_away(
    llm: SimulatedLLM, sidecar_factory: SidecarFactory, tmp_path: Path
) -> None:
    path = mount(tmp_path, "sk-present")
    sidecar = await sidecar_factory(secrets_dir=tmp_path)
    status, _ = await sidecar.admin("PUT", "/admin/config", json=keyed_config(llm))
    assert status == 200
    _, usage = await sidecar.admin("GET", "/admin/usage")
    assert usage["missingKeys"] == []
    path.unlink()  # the Secret deleted: the kubelet removes the file at its next sync
    _, usage = await sidecar.admin("GET", "/admin/usage")
    assert usage["missingKeys"] == [MISSING]
    assert "sk-present" not in str(usage)


async def test_a_sidecar_without_a_configuration_names_no_key(
    sidecar_factory: SidecarFactory,
) -> None:
    sidecar = await sidecar_factory()
    _, usage = await sidecar.admin("GET", "/admin/usage")
    assert usage["missingKeys"] == []


def single_keyed_config(llm: SimulatedLLM) -> dict:
    ref = {"name": "openai-creds", "key": "apiKey"}
    providers = [provider_for(llm, "keyed", apiKeySecretRef=ref)]
    return compile_policy(policy(providers=providers)).model_dump(mode="json", by_alias=True)


async def test_a_provider_without_its_key_is_refused_clearly_until_the_key_is_mounted(
    llm: SimulatedLLM, sidecar_factory: SidecarFactory, tmp_path: Path
) -> None:
    """The Pod is Ready with the Secret missing; a call gets a 503 in the caller's format that
    names the Secret and key (never sent upstream with the app's key); once the kubelet has
    mounted the key the same configuration is built again and the call goes through."""
    sidecar = await sidecar_factory(secrets_dir=tmp_path)
    status, answer = await sidecar.admin("PUT", "/admin/config", json=single_keyed_config(llm))
    assert status == 200 and answer["missingKeys"] == [MISSING]
    assert (await sidecar.admin("GET", "/readyz", headers={}))[0] == 200
    client = openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-app", max_retries=0)
    async with client:
        with pytest.raises(openai.APIStatusError) as refused:
            await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert refused.value.status_code == 503
        assert refused.value.code == "provider_key_missing"
        assert "Secret openai-creds key apiKey is not mounted" in refused.value.message
        assert llm.requests == []  # nothing went upstream, with the app's key or any other
        version = sidecar.state.version
        mount(tmp_path, "sk-mounted-later")
        KeyWatch(sidecar.state).check()
        assert sidecar.state.version == version  # the same configuration, with its key now
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert llm.requests[-1].headers["authorization"] == "Bearer sk-mounted-later"
    _, usage = await sidecar.admin("GET", "/admin/usage")
    assert usage["missingKeys"] == []


async def test_a_call_moves_past_a_provider_without_its_key(
    llm: SimulatedLLM, sidecar_factory: SidecarFactory, tmp_path: Path
) -> None:
    ref = {"name": "openai-creds", "key": "apiKey"}
    providers = [provider_for(llm, "keyed", apiKeySecretRef=ref), provider_for(llm, "open")]
    sidecar = await sidecar_factory(policy(providers=providers), secrets_dir=tmp_path)
    client = openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-app", max_retries=0)
    async with client:
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert llm.requests[-1].headers["authorization"] == "Bearer sk-app"  # the second provider
