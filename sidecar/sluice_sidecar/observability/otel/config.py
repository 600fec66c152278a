"""Whether and how the sidecar exports OTLP, decided from the standard ``OTEL_*`` variables.

Only what the SDK does not decide itself is read here: whether export is on (an OTLP
endpoint is set and ``OTEL_SDK_DISABLED`` is not true), the protocol of each signal (the
exporter classes differ per protocol), and the content opt-in. Endpoints, headers, timeouts,
the resource, the sampler, the export interval and the batch queue sizes are left to the SDK,
which reads their variables when the providers are built (``providers.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Protocol = Literal["grpc", "http/protobuf"]
PROTOCOLS: tuple[Protocol, ...] = ("grpc", "http/protobuf")
# The OTLP exporter specification's default protocol.
DEFAULT_PROTOCOL: Protocol = "http/protobuf"
# The variable the OpenTelemetry Python GenAI instrumentations use for the same opt-in.
CAPTURE_CONTENT_VARIABLE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


class OtelConfigError(ValueError):
    """An ``OTEL_*`` value the sidecar cannot use (the process refuses to start)."""


@dataclass(frozen=True, slots=True)
class OtelConfig:
    """OTLP export settings; ``traces``/``metrics`` None: that signal is not exported."""

    traces: Protocol | None = None
    metrics: Protocol | None = None
    capture_content: bool = False  # prompts and completions on spans: off unless opted in

    @property
    def enabled(self) -> bool:
        return self.traces is not None or self.metrics is not None


def otel_settings_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The variables that decide export, unvalidated, as the sidecar settings' ``otel_*`` fields:
    ``otel_traces``/``otel_metrics`` (the protocol text, or None: not exported) and
    ``otel_capture_content``. A value Sluice cannot honour is passed on as text saying what it
    was, for the settings model to refuse with."""
    found: dict[str, Any] = {"otel_traces": None, "otel_metrics": None}
    found["otel_capture_content"] = _true(env.get(CAPTURE_CONTENT_VARIABLE, ""))
    if _true(env.get("OTEL_SDK_DISABLED", "")):
        return found
    common = bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip())
    for signal in ("traces", "metrics"):
        upper = signal.upper()
        exporter = env.get(f"OTEL_{upper}_EXPORTER", "otlp").strip().lower() or "otlp"
        endpoint = common or bool(env.get(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT", "").strip())
        if exporter == "none" or not endpoint:
            continue
        if exporter != "otlp":
            found[f"otel_{signal}"] = f"OTEL_{upper}_EXPORTER={exporter} (only otlp or none)"
            continue
        found[f"otel_{signal}"] = (
            env.get(f"OTEL_EXPORTER_OTLP_{upper}_PROTOCOL", "").strip()
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip()
            or DEFAULT_PROTOCOL
        )
    return found


def otel_config_from_env(env: Mapping[str, str]) -> OtelConfig:
    """``otel_settings_from_env`` checked: OtelConfigError for a value Sluice cannot honour."""
    raw = otel_settings_from_env(env)
    for signal in ("otel_traces", "otel_metrics"):
        if raw[signal] is not None and raw[signal] not in PROTOCOLS:
            raise OtelConfigError(f"{signal}: {raw[signal]!r}; use grpc or http/protobuf")
    return OtelConfig(
        traces=raw["otel_traces"],
        metrics=raw["otel_metrics"],
        capture_content=raw["otel_capture_content"],
    )


def _true(value: str) -> bool:
    return value.strip().lower() == "true"
