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
from typing import Literal

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


def otel_config_from_env(
    env: Mapping[str, str], *, capture_content: bool | None = None
) -> OtelConfig:
    """Read the variables that decide export; ``capture_content`` overrides the variable."""
    if _true(env.get("OTEL_SDK_DISABLED", "")):
        return OtelConfig()
    common = bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip())
    signals: dict[str, Protocol | None] = {}
    for signal in ("traces", "metrics"):
        upper = signal.upper()
        exporter = env.get(f"OTEL_{upper}_EXPORTER", "otlp").strip().lower()
        endpoint = common or bool(env.get(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT", "").strip())
        if exporter == "none" or not endpoint:
            signals[signal] = None
            continue
        if exporter != "otlp":
            raise OtelConfigError(f"OTEL_{upper}_EXPORTER={exporter!r}: only otlp or none")
        signals[signal] = _protocol(env, upper)
    if capture_content is None:
        capture_content = _true(env.get(CAPTURE_CONTENT_VARIABLE, ""))
    return OtelConfig(
        traces=signals["traces"], metrics=signals["metrics"], capture_content=capture_content
    )


def _protocol(env: Mapping[str, str], signal: str) -> Protocol:
    name = f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"
    raw = env.get(name, "").strip() or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip()
    if not raw:
        return DEFAULT_PROTOCOL
    for protocol in PROTOCOLS:
        if raw == protocol:
            return protocol
    raise OtelConfigError(
        f"{name} (or OTEL_EXPORTER_OTLP_PROTOCOL)={raw!r}: use grpc or http/protobuf"
    )


def _true(value: str) -> bool:
    return value.strip().lower() == "true"
