"""Settings from flags and SLUICE_* variables (unit)."""

from __future__ import annotations

from pathlib import Path

from sluice_sidecar.__main__ import main
from sluice_sidecar.contract import pod
from sluice_sidecar.service.settings import load_settings
from sluice_sidecar.transports.http import DEFAULT_MAX_ANSWER_BYTES, DEFAULT_STREAM_IDLE_TIMEOUT_S


def test_defaults() -> None:
    settings = load_settings([], {})
    assert (
        (settings.data_port, settings.admin_port)
        == (pod.DATA_PORT, pod.ADMIN_PORT)
        == (17100, 17190)
    )
    assert settings.admin_token is None and settings.max_body_bytes == 10 * 1024 * 1024
    assert settings.overrides.empty


def test_environment_then_flags(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    settings = load_settings(
        ["--data-port", "9000", "--admin-token-file", str(token)],
        {
            "SLUICE_DATA_PORT": "8000",
            "SLUICE_ADMIN_PORT": "8090",
            "SLUICE_POLICY_DIR": "/policies",
            "SLUICE_RETRY_MAX_ATTEMPTS": "2",
            "SLUICE_DEFAULT_TIMEOUT_SECONDS": "30",
            "SLUICE_PROVIDER_BASE_URL_OPENAI_MAIN": "http://localhost:11434/v1",
        },
    )
    assert settings.data_port == 9000 and settings.admin_port == 8090
    assert settings.policy_dir == Path("/policies")
    assert settings.admin_token is not None and settings.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)  # never printed by accident
    assert settings.overrides.retry_max_attempts == 2
    assert settings.overrides.default_timeout_seconds == 30
    assert settings.overrides.provider_base_urls == {"openai-main": "http://localhost:11434/v1"}


def test_connection_time_bounds_have_defaults_and_variables() -> None:
    defaults = load_settings([], {})
    assert (defaults.header_timeout_s, defaults.body_timeout_s) == (10.0, 30.0)
    assert (defaults.keepalive_timeout_s, defaults.send_timeout_s) == (75.0, 30.0)
    settings = load_settings(
        [],
        {
            "SLUICE_HEADER_TIMEOUT_SECONDS": "2.5",
            "SLUICE_BODY_TIMEOUT_SECONDS": "5",
            "SLUICE_KEEPALIVE_TIMEOUT_SECONDS": "30",
            "SLUICE_SEND_TIMEOUT_SECONDS": "7",
        },
    )
    assert (settings.header_timeout_s, settings.body_timeout_s) == (2.5, 5.0)
    assert (settings.keepalive_timeout_s, settings.send_timeout_s) == (30.0, 7.0)


def test_upstream_answer_bounds_have_defaults_and_variables() -> None:
    defaults = load_settings([], {})
    assert defaults.max_answer_bytes == DEFAULT_MAX_ANSWER_BYTES
    assert defaults.stream_idle_timeout_s == DEFAULT_STREAM_IDLE_TIMEOUT_S
    settings = load_settings(
        [], {"SLUICE_MAX_ANSWER_BYTES": "65536", "SLUICE_STREAM_IDLE_TIMEOUT_SECONDS": "12"}
    )
    assert (settings.max_answer_bytes, settings.stream_idle_timeout_s) == (65536, 12.0)


def test_invalid_settings_exit_2_naming_each_problem(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setenv("SLUICE_HEADER_TIMEOUT_SECONDS", "soon")
    assert main(["--data-port", "99999"]) == 2
    problems = capsys.readouterr().err
    assert "data_port: Input should be less than or equal to 65535" in problems
    assert "header_timeout_s: Input should be a valid number" in problems
    monkeypatch.delenv("SLUICE_HEADER_TIMEOUT_SECONDS")
    assert main(["--admin-token-file", str(tmp_path / "missing")]) == 2
    assert "No such file or directory" in capsys.readouterr().err


def test_the_injected_workload_is_read_and_the_environment_kept_for_provider_keys() -> None:
    environ = {pod.PodEnv.WORKLOAD: "studio", "OPENAI_KEY": "sk-from-env"}
    settings = load_settings([], environ)
    assert settings.workload == "studio"
    assert settings.environ["OPENAI_KEY"] == "sk-from-env"
    assert "sk-from-env" not in repr(settings) and "OPENAI_KEY" not in str(settings.model_dump())
