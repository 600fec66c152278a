"""Building the request-path runtime from a config: keys, routing, presets (unit)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sluice_sidecar.contract import LlmPolicy, compile_policies
from sluice_sidecar.contract.model import ConfigRejected
from sluice_sidecar.errors import MalformedRequest, NoProviderForModel
from sluice_sidecar.pipeline.runtime import (
    MAX_KEY_FILE_BYTES,
    apply_preset,
    build_runtime,
)


def runtime_for(tmp_path: Path, environ: dict[str, str] | None = None, **spec: object):
    policy = LlmPolicy.model_validate(
        {"apiVersion": "sluice.dev/v1alpha1", "kind": "LlmPolicy", "spec": spec}
    )
    return build_runtime(compile_policies([policy]), secrets_dir=tmp_path, environ=environ or {})


def test_keys_from_secret_file_and_env(tmp_path: Path) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "key").write_text("sk-secret\n")
    runtime = runtime_for(
        tmp_path,
        {"ANTHROPIC_KEY": "sk-ant"},
        providers=[
            {"name": "a", "type": "openai", "apiKeySecretRef": {"name": "creds", "key": "key"}},
            {"name": "b", "type": "anthropic", "apiKeyEnv": "ANTHROPIC_KEY"},
            {
                "name": "c",
                "type": "openai-compatible",
                "baseUrl": "http://h/v1",
                "apiKeyEnv": "ANTHROPIC_KEY",
                "authHeader": "api-key",
            },
            {"name": "d", "type": "openai"},
        ],
    )
    a, b, c, d = runtime.providers
    assert a.auth_headers == {"authorization": "Bearer sk-secret"}
    assert b.auth_headers == {"x-api-key": "sk-ant"}
    assert c.auth_headers == {"api-key": "sk-ant"}
    assert d.auth_headers == {}  # the caller's own key passes through


def test_unreadable_keys_are_problems(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "k").mkdir()  # there, but no key file
    with pytest.raises(ConfigRejected) as caught:
        runtime_for(
            tmp_path,
            providers=[
                {"name": "a", "type": "openai", "apiKeySecretRef": {"name": "s", "key": "k"}},
                {"name": "b", "type": "openai", "apiKeyEnv": "MISSING"},
            ],
        )
    assert caught.value.problems[0].startswith("provider a: Secret s key k")
    assert caught.value.problems[1] == "provider b: environment variable MISSING is not set"


def test_an_unmounted_secret_key_refuses_only_its_provider(tmp_path: Path) -> None:
    """The kubelet mounts provider-key Secrets as optional: one not created yet leaves its
    provider without a key (its calls refused), not the whole configuration."""
    runtime = runtime_for(
        tmp_path,
        providers=[
            {"name": "a", "type": "openai", "apiKeySecretRef": {"name": "s", "key": "k"}},
            {"name": "b", "type": "openai"},
        ],
    )
    a, b = runtime.providers
    assert (a.missing_key, a.auth_headers) == ("Secret s key k", {})
    assert b.missing_key is None
    assert runtime.missing_keys == ("a",)


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink", "secret-ref"])
def test_key_files_outside_the_secrets_dir_are_refused(tmp_path: Path, how: str) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    admin_token = tmp_path / "admin-token"
    admin_token.write_text("the-admin-token")
    (secrets / "link").symlink_to(admin_token)
    source = {
        "absolute": {"apiKeyFile": str(admin_token)},
        "dotdot": {"apiKeyFile": str(secrets / ".." / "admin-token")},
        "symlink": {"apiKeyFile": str(secrets / "link")},
        "secret-ref": {"apiKeySecretRef": {"name": "s", "key": "../../admin-token"}},
    }[how]
    (secrets / "s").mkdir()
    with pytest.raises(ConfigRejected) as caught:
        runtime_for(secrets, providers=[{"name": "a", "type": "openai", **source}])
    assert "outside the secrets directory" in caught.value.problems[0]
    assert "the-admin-token" not in str(caught.value.problems)


def test_key_files_inside_the_secrets_dir_are_read(tmp_path: Path) -> None:
    (tmp_path / "openai").mkdir()
    (tmp_path / "openai" / "..data").mkdir()  # how a Kubernetes Secret volume links its keys
    (tmp_path / "openai" / "..data" / "key").write_text("sk-a\n")
    (tmp_path / "openai" / "key").symlink_to(tmp_path / "openai" / "..data" / "key")
    runtime = runtime_for(
        tmp_path,
        providers=[
            {"name": "a", "type": "openai", "apiKeyFile": str(tmp_path / "openai" / "key")},
            {"name": "b", "type": "openai", "apiKeyFile": "openai/key"},  # relative: in the dir
        ],
    )
    assert [p.auth_headers for p in runtime.providers] == [{"authorization": "Bearer sk-a"}] * 2


def test_a_key_with_a_line_break_inside_is_refused(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("sk-a\nX-Injected: 1\n")
    with pytest.raises(ConfigRejected) as caught:
        runtime_for(tmp_path, providers=[{"name": "a", "type": "openai", "apiKeyFile": "key"}])
    assert "control characters" in caught.value.problems[0]


def test_a_key_file_that_is_a_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    # Reading a FIFO waits for a writer for ever: the configuration swap must not hang on it.
    os.mkfifo(tmp_path / "key")
    with pytest.raises(ConfigRejected) as caught:
        runtime_for(tmp_path, providers=[{"name": "a", "type": "openai", "apiKeyFile": "key"}])
    assert "not a regular file" in caught.value.problems[0]


def test_a_key_file_far_larger_than_a_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "key").write_bytes(b"k" * (MAX_KEY_FILE_BYTES + 1))
    with pytest.raises(ConfigRejected) as caught:
        runtime_for(tmp_path, providers=[{"name": "a", "type": "openai", "apiKeyFile": "key"}])
    assert f"larger than {MAX_KEY_FILE_BYTES} bytes" in caught.value.problems[0]


def test_candidates_in_order_by_family_and_model(tmp_path: Path) -> None:
    runtime = runtime_for(
        tmp_path,
        providers=[
            {"name": "gpt", "type": "openai", "models": ["gpt-*"]},
            {"name": "any", "type": "openai-compatible", "baseUrl": "http://h/v1"},
            {"name": "claude", "type": "anthropic"},
        ],
        operations={"Pinned": {"providers": ["any"]}},
    )
    default = runtime.operation(None)
    assert [p.name for p in runtime.candidates("openai", "gpt-4o", default)] == ["gpt", "any"]
    assert [p.name for p in runtime.candidates("openai", "llama", default)] == ["any"]
    assert [p.name for p in runtime.candidates("anthropic", "claude-x", default)] == ["claude"]
    pinned = runtime.operation("Pinned")
    assert [p.name for p in runtime.candidates("openai", "gpt-4o", pinned)] == ["any"]
    with pytest.raises(NoProviderForModel):
        runtime.candidates("anthropic", "x", pinned)


def test_unknown_operation_rejected_or_allowed(tmp_path: Path) -> None:
    providers = [{"name": "a", "type": "openai"}]
    with pytest.raises(MalformedRequest, match="unknown operation 'Nope'"):
        runtime_for(tmp_path, providers=providers).operation("Nope")
    allowed = runtime_for(
        tmp_path, providers=providers, defaults={"unknownOperation": "allow", "timeoutSeconds": 9}
    )
    assert allowed.operation("Nope").timeout_s == 9


def test_timeouts_and_warning_points(tmp_path: Path) -> None:
    runtime = runtime_for(tmp_path, providers=[{"name": "a", "type": "openai"}])
    generation = runtime.operation("ScriptGeneration")
    assert (generation.timeout_s, generation.warn_after_s) == (120, 60)
    assert runtime.operation(None).name == "Completion"


def test_preset_fills_only_unset_fields(tmp_path: Path) -> None:
    runtime = runtime_for(tmp_path, providers=[{"name": "a", "type": "openai"}])
    op = runtime.operation("Scripting")
    body = {"temperature": 0.1}
    assert apply_preset(body, op, "max_completion_tokens")
    assert body == {"temperature": 0.1, "max_completion_tokens": 4000}
    untouched = {"temperature": 0.2, "max_tokens": 10}
    assert not apply_preset(untouched, op, "max_completion_tokens")
