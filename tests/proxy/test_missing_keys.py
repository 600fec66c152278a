"""The sidecar says which provider keys its configuration names that the Pod has not mounted
(service/provider_keys.py through the admin API): the operator, which never reads a Secret,
learns it from ``missingKeys``. Names only, never a value."""

from __future__ import annotations

from pathlib import Path

from tests.proxy.conftest import SidecarFactory
from tests.support.sidecar import compile_policy, policy, provider_for
from tests.support.simulator import SimulatedLLM

MISSING = {"provider": "keyed", "secret": "openai-creds", "key": "apiKey"}


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
