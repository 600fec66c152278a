"""The Helm chart: lints, renders, and its manifests are accepted by the real API server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from e2e.harness.controlplane import ControlPlane

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
    assert {p["port"] for p in service["spec"]["ports"]} == {443, 8081}  # webhook, usage
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_chart_manifests_accepted_by_the_api_server(
    helm: Path, control_plane: ControlPlane
) -> None:
    rendered = run_helm(helm, "template", "sluice", str(CHART), "-n", "default")
    control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)


def test_chart_ships_the_generated_crds() -> None:
    root = CHART.parents[1]
    for crd in (root / "crds").glob("*.yaml"):
        assert (CHART / "crds" / crd.name).read_text() == crd.read_text(), (
            f"helm/sluice/crds/{crd.name} differs from crds/{crd.name}: copy it"
        )
