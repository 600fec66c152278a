"""Per-pod sidecar settings from annotations (pod_overrides.py): ports, resources, refusals."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from sluice_operator.injection import inject
from sluice_operator.pod_overrides import InjectionRefused, effective_settings, quantity
from sluice_operator.settings import OperatorSettings

SETTINGS = OperatorSettings(sidecar_image="sidecar:test")


def pod(annotations: dict[str, str], ports: list[int] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "annotations": annotations},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "app",
                    "ports": [{"containerPort": p} for p in ports or []],
                }
            ]
        },
    }


def test_annotations_set_the_data_port_and_each_resource() -> None:
    annotations = {
        "sluice.dev/data-port": "18000",
        "sluice.dev/proxy-cpu": "200m",
        "sluice.dev/proxy-memory-limit": "1Gi",
    }
    settings = effective_settings(pod(annotations), SETTINGS)
    injected = inject(pod(annotations), settings, server_minor=35)
    (sidecar,) = injected["spec"]["initContainers"]
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert env["SLUICE_DATA_PORT"] == "18000"
    app_env = {e["name"]: e["value"] for e in injected["spec"]["containers"][0]["env"]}
    assert app_env["OPENAI_BASE_URL"] == "http://127.0.0.1:18000/v1"
    assert sidecar["resources"] == {
        "requests": {"cpu": "200m", "memory": "64Mi"},  # the chart's memory request stays
        "limits": {"memory": "1Gi"},
    }
    assert json.loads(SETTINGS.sidecar_resources)["requests"]["cpu"] == "50m"  # unchanged


@pytest.mark.parametrize(
    ("annotations", "ports", "named"),
    [
        ({"sluice.dev/proxy-cpu": "lots"}, [], "sluice.dev/proxy-cpu"),
        ({"sluice.dev/proxy-memory": "64MB"}, [], "sluice.dev/proxy-memory"),
        ({"sluice.dev/proxy-cpu": "2", "sluice.dev/proxy-cpu-limit": "1"}, [], "above its limit"),
        ({"sluice.dev/data-port": "80"}, [], "1024-65535"),
        ({"sluice.dev/data-port": "http"}, [], "1024-65535"),
        ({"sluice.dev/data-port": "17190"}, [], "equals the admin port"),
        ({}, [17100], "container 'app'"),
        ({"sluice.dev/data-port": "18000"}, [18000], "container 'app'"),
    ],
)
def test_bad_values_and_port_collisions_refuse_the_pod_naming_them(
    annotations: dict[str, str], ports: list[int], named: str
) -> None:
    with pytest.raises(InjectionRefused, match=named):
        effective_settings(pod(annotations, ports), SETTINGS)


def test_quantities_in_every_kubernetes_notation() -> None:
    assert quantity("100m") == Decimal("0.1")
    assert quantity("1.5") == Decimal("1.5")
    assert quantity("128Mi") == 128 * 1024**2
    assert quantity("1G") == 10**9
    assert quantity("1e3") == 1000
