"""The chart's price-table ConfigMap in every injected Pod (unit): volume, mount, settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sluice_operator.injection import PRICES_DIR, inject
from sluice_operator.settings import OperatorSettings, load_operator_settings

BARE = {
    "metadata": {"name": "studio-1", "labels": {"app": "studio"}},
    "spec": {"containers": [{"name": "app", "image": "app"}]},
}


def injected(settings: OperatorSettings) -> tuple[dict, dict]:
    pod = inject(BARE, settings, server_minor=35)
    (sidecar,) = pod["spec"]["initContainers"]
    return {v["name"]: v for v in pod["spec"]["volumes"]}, {
        m["name"]: m for m in sidecar["volumeMounts"]
    }


def test_the_price_configmap_is_mounted_whole_and_optional() -> None:
    settings = load_operator_settings({"SLUICE_OPERATOR_PRICES_CONFIG_MAP": "sluice-prices"})
    volumes, mounts = injected(settings)
    assert volumes["sluice-prices"] == {
        "name": "sluice-prices",
        "configMap": {
            "name": "sluice-prices",
            "optional": True,  # a namespace without it still starts its pods
            "items": [{"key": "prices.yaml", "path": "prices.yaml"}],
        },
    }
    # No subPath: the kubelet swaps the files of a whole-volume mount when the ConfigMap changes.
    assert mounts["sluice-prices"] == {
        "name": "sluice-prices",
        "mountPath": PRICES_DIR,
        "readOnly": True,
    }


def test_another_key_is_the_file_name() -> None:
    settings = OperatorSettings(prices_config_map="house-prices", prices_key="table.json")
    volumes, _ = injected(settings)
    assert volumes["sluice-prices"]["configMap"]["items"] == [
        {"key": "table.json", "path": "table.json"}
    ]


def test_without_the_setting_nothing_is_mounted() -> None:
    volumes, mounts = injected(OperatorSettings())
    assert "sluice-prices" not in volumes and "sluice-prices" not in mounts


@pytest.mark.parametrize(
    "environ",
    [
        {"SLUICE_OPERATOR_PRICES_CONFIG_MAP": "Prices_Table"},
        {"SLUICE_OPERATOR_PRICES_CONFIG_MAP": "p", "SLUICE_OPERATOR_PRICES_KEY": "../etc/passwd"},
        {"SLUICE_OPERATOR_PRICES_CONFIG_MAP": "p", "SLUICE_OPERATOR_PRICES_KEY": "..data"},
    ],
)
def test_names_kubernetes_would_refuse_are_refused_at_start(environ: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        load_operator_settings(environ)
