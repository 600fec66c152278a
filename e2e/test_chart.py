"""The Helm chart: lints, renders, and its manifests are accepted by the real API server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from e2e.harness.controlplane import ControlPlane
from sluice_operator.injection import sidecar_container
from sluice_operator.settings import load_operator_settings
from sluice_sidecar.contract.pod import ADMIN_PORT, DATA_PORT

pytestmark = pytest.mark.e2e
CHART = Path(__file__).resolve().parents[1] / "helm" / "sluice"


def run_helm(binary: Path, *args: str) -> str:
    result = subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("cert_manager", [False, True])
def test_chart_lints_and_renders(helm: Path, cert_manager: bool) -> None:
    flags = ["--set", f"webhook.certManager.enabled={str(cert_manager).lower()}"]
    run_helm(helm, "lint", "--strict", str(CHART), *flags)
    documents = [
        d
        for d in yaml.safe_load_all(
            run_helm(helm, "template", "sluice", str(CHART), "-n", "sluice-system", *flags)
        )
        if d
    ]
    kinds = {d["kind"] for d in documents}
    assert {
        "Deployment",
        "Service",
        "ClusterRole",
        "ClusterRoleBinding",
        "ServiceAccount",
        "MutatingWebhookConfiguration",
    } <= kinds
    assert ("Certificate" in kinds) is cert_manager
    (webhooks,) = [d for d in documents if d["kind"] == "MutatingWebhookConfiguration"]
    for hook in webhooks["webhooks"]:
        assert hook["failurePolicy"] == "Ignore" and hook["timeoutSeconds"] <= 10
    (service,) = [d for d in documents if d["kind"] == "Service"]
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ports == {"webhook": 443, "usage": 8081, "metrics": 8082}
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_chart_manifests_accepted_by_the_api_server(
    helm: Path, control_plane: ControlPlane
) -> None:
    rendered = run_helm(helm, "template", "sluice", str(CHART), "-n", "default")
    # helm installs crds/ first: the ClusterKopfPeering the templates create needs its CRD.
    control_plane.kubectl("apply", "-f", str(CHART / "crds"))
    control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)


def test_chart_ships_the_generated_crds() -> None:
    root = CHART.parents[1]
    for crd in (root / "crds").glob("*.yaml"):
        assert (CHART / "crds" / crd.name).read_text() == crd.read_text(), (
            f"helm/sluice/crds/{crd.name} differs from crds/{crd.name}: copy it"
        )


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("replicas=9", "/replicas"),  # one active operator and a few standing by
        ("image.repository=", "/image/repository"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("sidecar.image=ghcr.io/x/sidecar:1", "/sidecar"),  # the old value: now repository/tag
        ("sidecar.ports.data=70000", "/sidecar/ports/data"),
        ("webhook.timeoutSeconds=60", "/webhook/timeoutSeconds"),
        ("webhook.certManager.enabled=yes", "/webhook/certManager/enabled"),
        ("webhook.certManager.issuerKind=Cluster", "/webhook/certManager/issuerKind"),
        ("certificates.renewBeforeDays=0", "/certificates/renewBeforeDays"),
        ("push.attempts=0", "/push/attempts"),
        ("sidecar.resources.request.cpu=1", "/sidecar/resources"),  # requests, not request
        ("replica=1", "additional properties 'replica'"),  # a typo is an error, not ignored
        ("sidecar.otel.protocol=http/json", "/sidecar/otel/protocol"),
        ("sidecar.otel.tracesSampler=sometimes", "/sidecar/otel/tracesSampler"),
    ],
)
def test_schema_rejects_bad_values(helm: Path, setting: str, complaint: str) -> None:
    for command in ("lint", "template"):
        args = [command, str(CHART)] if command == "lint" else [command, "x", str(CHART)]
        result = subprocess.run(
            [str(helm), *args, "--set", setting],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode != 0, f"helm {command} accepted {setting}"
        assert complaint in result.stdout + result.stderr


def test_images_default_to_the_chart_app_version(helm: Path) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    rendered = run_helm(helm, "template", "sluice", str(CHART), "--show-only",
                        "templates/deployment.yaml")  # fmt: skip
    (deployment,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["image"] == f"ghcr.io/sluice-dev/sluice-operator:{app_version}"
    assert (
        env["SLUICE_OPERATOR_SIDECAR_IMAGE"] == f"ghcr.io/sluice-dev/sluice-sidecar:{app_version}"
    )
    # The chart's ports are the contract's (sluice_sidecar.contract.pod): defined once.
    assert env["SLUICE_OPERATOR_DATA_PORT"] == str(DATA_PORT)
    assert env["SLUICE_OPERATOR_ADMIN_PORT"] == str(ADMIN_PORT)


def operator_env(helm: Path, *flags: str) -> dict[str, str]:
    rendered = run_helm(helm, "template", "sluice", str(CHART), "--show-only",
                        "templates/deployment.yaml", *flags)  # fmt: skip
    (deployment,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_otel_values_reach_the_injected_sidecars_environment(helm: Path) -> None:
    """Chart values → the operator's settings → the OTEL_* variables of every injected sidecar."""
    values = (
        "sidecar.otel.endpoint=http://otel-collector.observability:4317,"
        "sidecar.otel.protocol=grpc,sidecar.otel.headersSecret=otlp-auth,"
        "sidecar.otel.metricExportIntervalMs=15000,"
        "sidecar.otel.tracesSampler=parentbased_traceidratio,sidecar.otel.tracesSamplerArg=0.1"
    )
    settings = load_operator_settings(operator_env(helm, "--set", values))
    env = sidecar_container(settings, "studio", native=True)["env"]
    plain = {e["name"]: e.get("value") for e in env}
    assert plain["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317"
    assert plain["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert plain["OTEL_METRIC_EXPORT_INTERVAL"] == "15000"
    assert plain["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert plain["OTEL_TRACES_SAMPLER_ARG"] == "0.1"
    (headers,) = [e for e in env if e["name"] == "OTEL_EXPORTER_OTLP_HEADERS"]
    assert headers["valueFrom"]["secretKeyRef"]["name"] == "otlp-auth"  # never a literal value
    # Without an endpoint, nothing of it is set: export stays off.
    quiet = sidecar_container(load_operator_settings(operator_env(helm)), "studio", native=True)
    assert not {e["name"] for e in quiet["env"]} & {
        "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_TRACES_SAMPLER"
    }  # fmt: skip
