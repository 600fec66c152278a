"""The Pod mutation the webhook applies (unit): what is added, and idempotency."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sluice_operator.injection import inject, is_injected, skip_reason, workload_of
from sluice_operator.settings import OperatorSettings, load_operator_settings

SETTINGS = OperatorSettings(sidecar_image="sidecar:test")


def pod(**annotations: str) -> dict:
    return {
        "metadata": {
            "generateName": "studio-7d9f-",
            "labels": {"app": "studio", "pod-template-hash": "7d9f"},
            "annotations": annotations,
            "ownerReferences": [{"kind": "ReplicaSet", "name": "studio-7d9f"}],
        },
        "spec": {
            "containers": [
                {"name": "app", "image": "app", "env": [{"name": "OPENAI_BASE_URL", "value": "x"}]}
            ]
        },
    }


def test_native_sidecar_on_129_and_later() -> None:
    injected = inject(pod(), SETTINGS, server_minor=35)
    (sidecar,) = injected["spec"]["initContainers"]
    assert sidecar["name"] == "sluice-proxy" and sidecar["restartPolicy"] == "Always"
    assert [c["name"] for c in injected["spec"]["containers"]] == ["app"]
    assert injected["metadata"]["labels"]["sluice.dev/workload"] == "studio"
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert env["SLUICE_WORKLOAD"] == "studio"


def test_regular_container_before_129() -> None:
    injected = inject(pod(), SETTINGS, server_minor=28)
    assert "initContainers" not in injected["spec"]
    assert [c["name"] for c in injected["spec"]["containers"]] == ["app", "sluice-proxy"]
    assert "restartPolicy" not in injected["spec"]["containers"][1]


def test_base_urls_added_unless_set_or_opted_out() -> None:
    app = inject(pod(), SETTINGS, server_minor=35)["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in app["env"]}
    assert env["OPENAI_BASE_URL"] == "x"  # the app's own value wins
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:17100"
    opted_out = inject(pod(**{"sluice.dev/inject-base-urls": "false"}), SETTINGS, server_minor=35)
    assert [e["name"] for e in opted_out["spec"]["containers"][0]["env"]] == ["OPENAI_BASE_URL"]


def test_provider_keys_are_projected_per_secret() -> None:
    injected = inject(
        pod(), SETTINGS, server_minor=35, key_secrets={"openai": ["apiKey"], "az": ["k1", "k2"]}
    )
    (volume,) = [v for v in injected["spec"]["volumes"] if v["name"] == "sluice-provider-keys"]
    paths = [i["path"] for s in volume["projected"]["sources"] for i in s["secret"]["items"]]
    assert paths == ["az/k1", "az/k2", "openai/apiKey"]


def test_injection_is_idempotent_and_pure() -> None:
    original = pod()
    once = inject(original, SETTINGS, server_minor=35)
    assert not is_injected(original)  # the input is not modified
    assert is_injected(once) and inject(once, SETTINGS, server_minor=35) is once


def test_workload_name_from_the_replicaset() -> None:
    assert workload_of(pod()) == "studio"
    bare = {"metadata": {"name": "job-x", "labels": {}}}
    assert workload_of(bare) == "job-x"


def test_host_network_and_opted_out_pods_are_skipped() -> None:
    assert skip_reason(pod()) is None
    host = pod()
    host["spec"]["hostNetwork"] = True
    assert "hostNetwork" in (skip_reason(host) or "")
    assert "opted out" in (skip_reason(pod(**{"sluice.dev/inject": "false"})) or "")
    assert "already" in (skip_reason(inject(pod(), SETTINGS, server_minor=35)) or "")


def test_the_sidecar_goes_after_a_mesh_proxy_and_before_later_init_containers() -> None:
    mesh = pod()
    mesh["spec"]["initContainers"] = [
        {"name": "istio-init", "image": "proxy"},
        {"name": "istio-proxy", "image": "proxy", "restartPolicy": "Always"},
        {"name": "migrate", "image": "app"},
    ]
    injected = inject(mesh, SETTINGS, server_minor=35)
    assert [c["name"] for c in injected["spec"]["initContainers"]] == [
        "istio-init",
        "istio-proxy",
        "sluice-proxy",
        "migrate",
    ]


def test_a_container_taking_variables_from_env_from_still_calls_through_the_sidecar() -> None:
    # envFrom usually carries the key: leaving such a container alone would leave it ungoverned.
    configured = pod()
    configured["spec"]["containers"][0] = {
        "name": "app", "image": "app", "envFrom": [{"secretRef": {"name": "openai"}}]
    }  # fmt: skip
    env = {
        e["name"]: e["value"]
        for e in inject(configured, SETTINGS, server_minor=35)["spec"]["containers"][0]["env"]
    }
    assert env["OPENAI_BASE_URL"].startswith("http://127.0.0.1:")
    assert "ANTHROPIC_BASE_URL" in env


def test_except_env_from_leaves_a_container_to_its_own_base_urls_and_names_it() -> None:
    configured = pod(**{"sluice.dev/inject-base-urls": "except-env-from"})
    app = configured["spec"]["containers"][0]
    app["envFrom"] = [{"configMapRef": {"name": "llm-endpoints"}}]
    injected = inject(configured, SETTINGS, server_minor=35)
    assert injected["spec"]["containers"][0]["env"] == app["env"]  # nothing added
    assert injected["metadata"]["annotations"]["sluice.dev/base-urls-skipped"] == "app"


def kubelet_env(container: dict, pod_fields: dict[str, str]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: downward-API fields resolved and
    ``$(VAR)`` expanded from the entries defined before (a later or unknown one stays as is)."""
    found: dict[str, str] = {}
    for entry in container["env"]:
        if "valueFrom" in entry:
            found[entry["name"]] = pod_fields[entry["valueFrom"]["fieldRef"]["fieldPath"]]
            continue
        value = entry["value"]
        for name, known in found.items():
            value = value.replace(f"$({name})", known)
        found[entry["name"]] = value
    return found


def test_the_sidecar_exports_under_the_pods_kubernetes_resource_attributes() -> None:
    (sidecar,) = inject(pod(), SETTINGS, server_minor=35)["spec"]["initContainers"]
    fields = {
        "metadata.name": "studio-7d9f-x2k4p",
        "metadata.namespace": "team-a",
        "metadata.uid": "0f3c",
    }
    env = kubelet_env(sidecar, fields)
    resource = dict(item.split("=", 1) for item in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
    assert resource == {
        "k8s.namespace.name": "team-a",
        "k8s.pod.name": "studio-7d9f-x2k4p",
        "k8s.deployment.name": "studio",
    }
    assert env["OTEL_SERVICE_NAME"] == "studio"


EXPORT_VARIABLES = {
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
}


def otel_env(settings: OperatorSettings) -> dict[str, dict]:
    (sidecar,) = inject(pod(), settings, server_minor=35)["spec"]["initContainers"]
    return {e["name"]: e for e in sidecar["env"] if e["name"] in EXPORT_VARIABLES}


def test_the_charts_otlp_settings_reach_the_sidecar_with_the_headers_from_a_secret() -> None:
    settings = load_operator_settings(
        {
            "SLUICE_OPERATOR_OTEL_ENDPOINT": "http://otel-collector.observability:4317",
            "SLUICE_OPERATOR_OTEL_PROTOCOL": "grpc",
            "SLUICE_OPERATOR_OTEL_HEADERS_SECRET": "otlp-auth",
            "SLUICE_OPERATOR_OTEL_METRIC_EXPORT_INTERVAL_MS": "15000",
            "SLUICE_OPERATOR_OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "SLUICE_OPERATOR_OTEL_TRACES_SAMPLER_ARG": "0.25",
        }
    )
    env = otel_env(settings)
    assert {name: e.get("value") for name, e in env.items()} == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4317",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_HEADERS": None,  # never a plain value: headers carry tokens
        "OTEL_METRIC_EXPORT_INTERVAL": "15000",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
    }
    assert env["OTEL_EXPORTER_OTLP_HEADERS"]["valueFrom"] == {
        "secretKeyRef": {"name": "otlp-auth", "key": "headers", "optional": True}
    }


def test_without_an_otlp_endpoint_the_sidecar_gets_no_export_settings() -> None:
    settings = OperatorSettings(otel_protocol="grpc", otel_headers_secret="otlp-auth")
    assert otel_env(settings) == {}


def test_an_unknown_otlp_protocol_or_sampler_is_refused() -> None:
    for name, value in (("PROTOCOL", "http/json"), ("TRACES_SAMPLER", "sometimes")):
        with pytest.raises(ValidationError, match=f"otel_{name.lower()}"):
            load_operator_settings({f"SLUICE_OPERATOR_OTEL_{name}": value})
