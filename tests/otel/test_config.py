"""Which OTEL_* variables turn export on, and with which protocol."""

from __future__ import annotations

import pytest

from sluice_sidecar.observability.otel import OtelConfigError, otel_config_from_env

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


def test_no_endpoint_means_no_export() -> None:
    assert not otel_config_from_env({}).enabled


def test_an_endpoint_turns_both_signals_on_over_the_specs_default_protocol() -> None:
    config = otel_config_from_env(ENDPOINT)
    assert (config.traces, config.metrics) == ("http/protobuf", "http/protobuf")
    assert not config.capture_content


def test_per_signal_protocols_and_endpoints() -> None:
    config = otel_config_from_env(
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        }
    )
    assert (config.traces, config.metrics) == ("grpc", None)
    config = otel_config_from_env(ENDPOINT | {"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"})
    assert (config.traces, config.metrics) == ("http/protobuf", "grpc")


def test_sdk_disabled_and_exporter_none_turn_export_off() -> None:
    assert not otel_config_from_env(ENDPOINT | {"OTEL_SDK_DISABLED": "true"}).enabled
    config = otel_config_from_env(ENDPOINT | {"OTEL_METRICS_EXPORTER": "none"})
    assert (config.traces, config.metrics) == ("http/protobuf", None)


@pytest.mark.parametrize(
    "variables",
    [{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, {"OTEL_TRACES_EXPORTER": "zipkin"}],
)
def test_values_the_sidecar_cannot_honour_are_refused(variables) -> None:
    with pytest.raises(OtelConfigError):
        otel_config_from_env(ENDPOINT | variables)


def test_content_capture_is_opt_in() -> None:
    opted = ENDPOINT | {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}
    assert otel_config_from_env(opted).capture_content
