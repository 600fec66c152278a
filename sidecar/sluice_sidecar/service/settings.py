"""Process settings of the sidecar: one frozen model, filled from flags and SLUICE_* variables.

Environment variables are read here and nowhere else; the result is passed down explicitly.
Precedence: command-line flag, then environment variable, then the field's default.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr

from sluice_sidecar.contract import pod
from sluice_sidecar.contract.model import RetryStrategy
from sluice_sidecar.observability.otel.config import OtelConfig, otel_settings_from_env
from sluice_sidecar.transports.http import (
    DEFAULT_CONNECTION_LIMIT,
    DEFAULT_MAX_ANSWER_BYTES,
    DEFAULT_STREAM_IDLE_TIMEOUT_S,
)

ENV_PREFIX = "SLUICE_"
PROVIDER_URL_PREFIX = "SLUICE_PROVIDER_BASE_URL_"


class ConfigOverrides(BaseModel):
    """Common settings a developer overrides on top of the compiled policies (standalone)."""

    model_config = ConfigDict(frozen=True)
    default_timeout_seconds: float | None = Field(default=None, gt=0)
    retry_max_attempts: int | None = Field(default=None, ge=1, le=10)
    retry_strategy: RetryStrategy | None = None
    retry_base_delay_ms: int | None = Field(default=None, ge=0)
    provider_base_urls: dict[str, str] = Field(
        default_factory=dict, description="Provider name -> base URL (point it at a local model)."
    )

    @property
    def empty(self) -> bool:
        return self == ConfigOverrides()


class SidecarSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    data_host: str = Field(default="127.0.0.1", description="Address of the LLM API port.")
    data_port: int = Field(default=pod.DATA_PORT, ge=0, le=65535)
    admin_host: str = Field(default="127.0.0.1", description="Address of the admin port.")
    admin_port: int = Field(default=pod.ADMIN_PORT, ge=0, le=65535)
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token of /admin/*; None: the admin API is refused."
    )
    policy_dir: Path | None = Field(default=None, description="Standalone: LlmPolicy YAML folder.")
    config_file: Path | None = Field(
        default=None, description="Compiled SidecarConfig (JSON/YAML) read at start (a ConfigMap)."
    )
    watch: bool = Field(default=True, description="Reload policy_dir when its files change.")
    secrets_dir: Path = Field(
        default=Path(pod.SECRETS_DIR),
        description="Where apiKeySecretRef keys are mounted: <dir>/<secret>/<key>.",
    )
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # The caller is the app in the same pod, on loopback: a healthy one sends its headers in
    # microseconds and 10 MiB in well under a second, so these bounds only cut stalled or
    # hostile connections (Go servers and hyper use 2-30 s for headers; nginx 60 s).
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds from a request's first byte to the end of its headers; then the"
        " connection is closed.",
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds to receive a whole request body once its headers are in; then 408.",
    )
    send_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds to send a whole (non-stream) answer to a caller that reads it;"
        " then the connection is closed. Streams are bounded by the call's deadline.",
    )
    keepalive_timeout_s: float = Field(
        default=75.0,
        gt=0,
        description="Seconds an idle connection (no request yet, or between requests) stays open;"
        " 75 like nginx, longer than the 60 s idle timeout of common HTTP client pools.",
    )
    upstream_connection_limit: int = Field(
        default=DEFAULT_CONNECTION_LIMIT,
        ge=1,
        description="Upstream calls in flight at once (streams until they end); one more is"
        " refused at once with 503, never queued.",
    )
    max_answer_bytes: int = Field(
        default=DEFAULT_MAX_ANSWER_BYTES,
        ge=1024,
        description="Largest non-stream upstream answer, decompressed, in bytes; past it 502.",
    )
    stream_idle_timeout_s: float = Field(
        default=DEFAULT_STREAM_IDLE_TIMEOUT_S,
        gt=0,
        description="Seconds a stream may stay silent between two chunks; then it is broken.",
    )
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    # The process environment, kept for the provider keys a configuration names by variable
    # (apiKeyEnv): this module stays the only reader of os.environ. Private, so it is never
    # dumped or logged with the settings.
    _environ: Mapping[str, str] = PrivateAttr(default_factory=lambda: os.environ)

    @property
    def environ(self) -> Mapping[str, str]:
        return self._environ

    access_log: bool = False
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="Event loop: uvloop (where installed; 6-19 % less CPU per call,"
        " docs/performance.md) or the standard library's asyncio loop.",
    )
    state_dir: Path | None = Field(
        default=None,
        description="Where budget spend is saved (a volume) to survive restarts; None: memory.",
    )
    usage_report_url: str | None = Field(
        default=None,
        description="Where the final usage is POSTed on shutdown (the operator's /usage).",
    )
    pod_uid: str | None = Field(default=None, description="This pod's UID (downward API).")
    workload: str | None = Field(
        default=None,
        description="This pod's workload as the injector names it; the final usage report names"
        " it when no configuration was ever loaded.",
    )
    namespace: str | None = Field(default=None, description="This pod's namespace.")
    redis_url: str | None = Field(
        default=None,
        description="Redis shared by the replicas (cache backend redis, budget counters).",
    )
    overrides: ConfigOverrides = Field(default_factory=ConfigOverrides)
    # OTLP export (docs/observability.md), from the standard OTEL_* variables; the SDK reads
    # the rest of them (endpoint, headers, resource, sampler, intervals) itself.
    otel_traces: Literal["grpc", "http/protobuf"] | None = Field(
        default=None, description="OTLP protocol of span export; None: spans are not exported."
    )
    otel_metrics: Literal["grpc", "http/protobuf"] | None = Field(
        default=None, description="OTLP protocol of metric export; None: not exported."
    )
    otel_capture_content: bool = Field(
        default=False, description="Prompts and completions on spans (opt-in; they leave the pod)."
    )

    @property
    def otel(self) -> OtelConfig:
        return OtelConfig(self.otel_traces, self.otel_metrics, self.otel_capture_content)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sluice-sidecar",
        description="Sluice sidecar: an OpenAI/Anthropic-compatible proxy that enforces LlmPolicy.",
    )
    parser.add_argument("--policy-dir", type=Path, help="standalone mode: LlmPolicy YAML folder")
    parser.add_argument("--config-file", type=Path, help="compiled SidecarConfig to start with")
    parser.add_argument("--host", dest="data_host", help="data port address (default 127.0.0.1)")
    parser.add_argument("--data-port", type=int)
    parser.add_argument("--admin-host")
    parser.add_argument("--admin-port", type=int)
    parser.add_argument("--admin-token-file", type=Path, help="file holding the admin token")
    parser.add_argument("--secrets-dir", type=Path)
    parser.add_argument("--no-watch", dest="watch", action="store_false", default=None)
    parser.add_argument("--log-level")
    parser.add_argument("--log-format", choices=["text", "json"])
    parser.add_argument("--access-log", action="store_true", default=None)
    parser.add_argument("--event-loop", choices=["uvloop", "asyncio"])
    parser.add_argument("--state-dir", type=Path, help="folder for budget spend (a volume)")
    parser.add_argument("--redis-url", help="redis://host:port/db shared by the replicas")
    return parser


def load_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> SidecarSettings:
    environ = os.environ if environ is None else environ
    args = vars(_parser().parse_args(argv))
    values: dict[str, object] = {}
    env_names = {
        "data_host": "HOST",
        "data_port": pod.PodEnv.DATA_PORT.removeprefix(ENV_PREFIX),
        "admin_host": "ADMIN_HOST",
        "admin_port": pod.PodEnv.ADMIN_PORT.removeprefix(ENV_PREFIX),
        "policy_dir": "POLICY_DIR",
        "config_file": "CONFIG_FILE",
        "secrets_dir": pod.PodEnv.SECRETS_DIR.removeprefix(ENV_PREFIX),
        "max_body_bytes": "MAX_BODY_BYTES",
        "header_timeout_s": "HEADER_TIMEOUT_SECONDS",
        "body_timeout_s": "BODY_TIMEOUT_SECONDS",
        "keepalive_timeout_s": "KEEPALIVE_TIMEOUT_SECONDS",
        "send_timeout_s": "SEND_TIMEOUT_SECONDS",
        "upstream_connection_limit": "UPSTREAM_CONNECTION_LIMIT",
        "max_answer_bytes": "MAX_ANSWER_BYTES",
        "stream_idle_timeout_s": "STREAM_IDLE_TIMEOUT_SECONDS",
        "log_level": "LOG_LEVEL",
        "log_format": "LOG_FORMAT",
        "access_log": "ACCESS_LOG",
        "event_loop": "EVENT_LOOP",
        "watch": "WATCH",
        "state_dir": pod.PodEnv.STATE_DIR.removeprefix(ENV_PREFIX),
        "redis_url": "REDIS_URL",
        "usage_report_url": pod.PodEnv.USAGE_REPORT_URL.removeprefix(ENV_PREFIX),
        "pod_uid": pod.PodEnv.POD_UID.removeprefix(ENV_PREFIX),
        "workload": pod.PodEnv.WORKLOAD.removeprefix(ENV_PREFIX),
        "namespace": pod.PodEnv.NAMESPACE.removeprefix(ENV_PREFIX),
    }
    for field, suffix in env_names.items():
        if (value := environ.get(ENV_PREFIX + suffix)) not in (None, ""):
            values[field] = value
    for field in env_names:
        if args.get(field) is not None:
            values[field] = args[field]
    values["admin_token"] = _admin_token(args.get("admin_token_file"), environ)
    values["overrides"] = _overrides(environ)
    values.update(otel_settings_from_env(environ))
    settings = SidecarSettings.model_validate(values)
    settings._environ = environ
    return settings


def _admin_token(token_file: Path | None, environ: Mapping[str, str]) -> str | None:
    token_file = token_file or (
        Path(environ[pod.PodEnv.ADMIN_TOKEN_FILE])
        if environ.get(pod.PodEnv.ADMIN_TOKEN_FILE)
        else None
    )
    if token_file is not None:
        return token_file.read_text().strip() or None
    return environ.get("SLUICE_ADMIN_TOKEN") or None


def _overrides(environ: Mapping[str, str]) -> ConfigOverrides:
    urls = {
        key[len(PROVIDER_URL_PREFIX) :].lower().replace("_", "-"): value
        for key, value in environ.items()
        if key.startswith(PROVIDER_URL_PREFIX) and value
    }
    # The environment holds strings: validated (not constructed) so pydantic parses them.
    return ConfigOverrides.model_validate(
        {
            "default_timeout_seconds": environ.get("SLUICE_DEFAULT_TIMEOUT_SECONDS") or None,
            "retry_max_attempts": environ.get("SLUICE_RETRY_MAX_ATTEMPTS") or None,
            "retry_strategy": environ.get("SLUICE_RETRY_STRATEGY") or None,
            "retry_base_delay_ms": environ.get("SLUICE_RETRY_BASE_DELAY_MS") or None,
            "provider_base_urls": urls,
        }
    )
