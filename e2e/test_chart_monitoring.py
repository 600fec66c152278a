"""The chart's monitoring objects: dashboards as ConfigMaps (on by default), and the PodMonitor,
ServiceMonitor and PrometheusRule behind their values (they need the Prometheus Operator)."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import render
from e2e.harness.controlplane import ControlPlane, KubectlError
from tests.prometheus.rules import RULES_FILE

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "sluice"
PROMETHEUS_OPERATOR_CRDS = ROOT / "e2e" / "promop" / "build"
OPERATOR_CRDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
ALL_ON = [
    "--set",
    "monitoring.podMonitor.enabled=true,monitoring.serviceMonitor.enabled=true,"
    "monitoring.prometheusRule.enabled=true,monitoring.labels.release=kube-prometheus-stack",
]


def rendered(helm: Path, *flags: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(helm), "template", "sluice", str(CHART), "-n", "sluice-system", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def of_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] == kind]


def test_by_default_the_dashboards_ship_and_nothing_needs_the_operator_crds(helm: Path) -> None:
    documents = rendered(helm)
    assert not {d["kind"] for d in documents} & OPERATOR_CRDS
    dashboards = [
        d for d in of_kind(documents, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")
    ]
    shipped = {name: text for d in dashboards for name, text in d["data"].items()}
    assert {name: json.loads(text) for name, text in shipped.items()} == {
        name: json.loads(text) for name, text in render().items()
    }
    for d in dashboards:
        assert d["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert d["metadata"]["annotations"] == {"grafana_folder": "Sluice"}
        assert d["metadata"]["namespace"] == "sluice-system"


def test_dashboards_can_go_elsewhere_or_be_left_out(helm: Path) -> None:
    moved = rendered(helm, "--set", "monitoring.dashboards.namespace=grafana")
    assert {d["metadata"]["namespace"] for d in of_kind(moved, "ConfigMap")} >= {"grafana"}
    none = rendered(helm, "--set", "monitoring.dashboards.enabled=false")
    assert not [
        d for d in of_kind(none, "ConfigMap") if d["metadata"]["name"].endswith("dashboard")
    ]


def test_pod_monitor_scrapes_injected_sidecars_with_their_workload(helm: Path) -> None:
    (monitor,) = of_kind(rendered(helm, *ALL_ON), "PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    assert monitor["spec"]["selector"]["matchLabels"] == {"sluice.dev/injected": "true"}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("sluice-admin", "/metrics")
    assert endpoint["relabelings"] == [
        {
            "sourceLabels": ["__meta_kubernetes_pod_label_sluice_dev_workload"],
            "targetLabel": "workload",
        }
    ]


def test_service_monitor_selects_the_operator_service_and_its_metrics_port(helm: Path) -> None:
    documents = rendered(helm, *ALL_ON)
    (monitor,) = of_kind(documents, "ServiceMonitor")
    (service,) = of_kind(documents, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["sluice-system"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["honorLabels"] is True  # the operator's own namespace label is kept


def test_prometheus_rule_carries_the_tested_rule_file(helm: Path) -> None:
    (rule,) = of_kind(rendered(helm, *ALL_ON), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text())


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("monitoring.podMonitor.enabled=maybe", "/monitoring/podMonitor/enabled"),
        ("monitoring.serviceMonitor.interval=often", "/monitoring/serviceMonitor/interval"),
        ("monitoring.dashboards.label=", "/monitoring/dashboards/label"),
        ("monitoring.grafana=true", "/monitoring"),
    ],
)
def test_schema_rejects_bad_monitoring_values(helm: Path, setting: str, complaint: str) -> None:
    result = subprocess.run(
        [str(helm), "template", "sluice", str(CHART), "--set", setting],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and complaint in result.stderr, result.stderr


@pytest.fixture(scope="module")
def prometheus_operator_crds(control_plane: ControlPlane) -> ControlPlane:
    """The Prometheus Operator's own CRDs (generated from its Go API module by
    e2e/promop/build), installed in the real API server."""
    built = subprocess.run(
        [str(PROMETHEUS_OPERATOR_CRDS)], capture_output=True, text=True, timeout=900, check=False
    )
    assert built.returncode == 0, built.stdout + built.stderr
    directory = subprocess.run(
        [str(PROMETHEUS_OPERATOR_CRDS), "--print-dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    control_plane.kubectl("apply", "--server-side", "-f", directory)
    for plural in ("podmonitors", "servicemonitors", "prometheusrules"):
        control_plane.kubectl(
            "wait", "--for=condition=Established", f"crd/{plural}.monitoring.coreos.com",
            "--timeout=30s",
        )  # fmt: skip
    return control_plane


def test_the_monitoring_objects_pass_the_prometheus_operator_schemas(
    helm: Path, prometheus_operator_crds: ControlPlane, namespace: str
) -> None:
    objects = [d for d in rendered(helm, *ALL_ON) if d["kind"] in OPERATOR_CRDS]
    assert {d["kind"] for d in objects} == OPERATOR_CRDS
    for document in objects:
        document["metadata"]["namespace"] = namespace
        prometheus_operator_crds.kubectl(
            "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(document)
        )
    # The same check refuses an object its schema does not allow: it can fail.
    [monitor] = of_kind(objects, "PodMonitor")
    broken = copy.deepcopy(monitor)
    broken["spec"]["podMetricsEndpoints"][0]["scheme"] = "gopher"
    with pytest.raises(KubectlError) as refused:
        prometheus_operator_crds.kubectl(
            "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(broken)
        )
    assert "scheme" in refused.value.stderr
