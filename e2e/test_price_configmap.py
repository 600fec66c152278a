"""The chart's price table in cluster, on the real control plane: ``prices.configMap`` reaches
the operator's settings, the webhook mounts that ConfigMap into the injected Pod, the sidecar
reports the table's date in ``/admin/usage``, and a changed ConfigMap reaches it without a
restart once the volume is refreshed.

The fake kubelet mounts what ``sidecar_launch`` knows (the sidecar's ConfigMap, its Secrets);
the price volume is mounted here as a kubelet does it: the ConfigMap's key written by the
kubelet's atomic writer (a timestamped folder behind ``..data``), and that folder bind-mounted at
the container's ``mountPath`` in a mount namespace of the sidecar's own (root, ``unshare``), so
the policy's ``pricingFile`` is the path a real Pod has.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml

from e2e.harness.controlplane import ControlPlane
from e2e.harness.kubelet import Launch, LaunchFactory, PodSlot
from e2e.harness.processes import wait_until
from e2e.sluice import SluiceDeployment, sidecar_admin, sidecar_launch
from e2e.workloads import admin_token, deployment, policy, running_sidecars
from sluice_operator.injection import PRICES_DIR, PRICES_VOLUME, inject
from sluice_operator.settings import load_operator_settings
from sluice_sidecar.contract.pod import DATA_PORT

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "sluice"
PRICES = "sluice-prices"
KEY = "prices.yaml"


def table(as_of: str, input_per_1m: int) -> str:
    return yaml.safe_dump(
        {"asOf": as_of, "models": {"sim-model": {"inputPer1M": input_per_1m, "outputPer1M": 0}}}
    )


def test_prices_values_reach_the_injected_pod(helm: Path) -> None:
    """Chart values → the operator's settings → the price volume of every injected Pod."""
    rendered = subprocess.run(
        [str(helm), "template", "sluice", str(CHART), "--show-only", "templates/deployment.yaml",
         "--set", f"prices.configMap={PRICES},prices.key=table.json"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    (operator,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
    (container,) = operator["spec"]["template"]["spec"]["containers"]
    settings = load_operator_settings(
        {e["name"]: e["value"] for e in container["env"] if "value" in e}
    )
    assert (settings.prices_config_map, settings.prices_key) == (PRICES, "table.json")
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "a"}]}}
    volumes = {v["name"]: v for v in inject(pod, settings, server_minor=35)["spec"]["volumes"]}
    assert volumes[PRICES_VOLUME]["configMap"]["name"] == PRICES


@pytest.fixture
def operator_with_prices(
    sluice: SluiceDeployment, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The session's operator restarted with the chart's ``prices.configMap`` setting, and
    restarted without it afterwards."""
    monkeypatch.setenv("SLUICE_OPERATOR_PRICES_CONFIG_MAP", PRICES)
    sluice.stop_operator()
    sluice.start_operator()
    yield
    monkeypatch.delenv("SLUICE_OPERATOR_PRICES_CONFIG_MAP")
    sluice.stop_operator()
    sluice.start_operator()


class PriceVolume:
    """The price ConfigMap as the kubelet keeps a volume of it: ``refresh`` is its sync."""

    def __init__(self, cp: ControlPlane, namespace: str, folder: Path) -> None:
        self.cp, self.namespace, self.folder = cp, namespace, folder
        self.generation = 0

    def refresh(self) -> None:
        found = self.cp.request("GET", f"/api/v1/namespaces/{self.namespace}/configmaps/{PRICES}")
        self.generation += 1
        data = self.folder / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{self.generation:09d}"
        data.mkdir(parents=True)
        (data / KEY).write_text(found["data"][KEY])
        (self.folder / "..data_tmp").symlink_to(data.name)
        (self.folder / "..data_tmp").replace(self.folder / "..data")
        if not (self.folder / KEY).is_symlink():
            (self.folder / KEY).symlink_to(f"..data/{KEY}")

    def launch(self, base: LaunchFactory) -> LaunchFactory:
        def run(slot: PodSlot) -> Launch:
            spec = slot.pod["spec"]
            sidecar = next(c for c in spec["initContainers"] if c["name"] == "sluice-proxy")
            (mount,) = [m for m in sidecar["volumeMounts"] if m["name"] == PRICES_VOLUME]
            (volume,) = [v for v in spec["volumes"] if v["name"] == PRICES_VOLUME]
            source = volume["configMap"]
            assert (source["name"], source["optional"]) == (PRICES, True)
            assert [(i["key"], i["path"]) for i in source["items"]] == [(KEY, KEY)]
            assert mount["mountPath"] == PRICES_DIR and "subPath" not in mount
            self.refresh()
            inner = base(slot)
            Path(PRICES_DIR).mkdir(parents=True, exist_ok=True)  # the mount point
            script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                    str(self.folder), PRICES_DIR, *inner.argv]  # fmt: skip
            return Launch(argv, inner.env, inner.ports, inner.cwd, inner.on_stop)

        return run


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="mounting the price volume at its Pod path needs root and unshare",
)
def test_an_injected_sidecar_reports_the_tables_date_and_follows_a_change(
    operator_with_prices: None,
    control_plane: ControlPlane,
    namespace: str,
    fake_kubelet,
    simulator: str,
    tmp_path: Path,
) -> None:
    control_plane.api.create(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"metadata": {"name": PRICES}, "data": {KEY: table("2026-11-15", 1_000_000)}},
    )
    spec = {
        "providers": [{"name": "sim", "type": "openai-compatible", "baseUrl": simulator}],
        "pricingFile": f"{PRICES_DIR}/{KEY}",
    }
    control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input=policy("priced", "studio", **spec)
    )
    volume = PriceVolume(control_plane, namespace, tmp_path / "prices-volume")
    kubelet = fake_kubelet(
        namespace,
        "sluice.dev/injected=true",
        volume.launch(sidecar_launch(control_plane, tmp_path)),
    )
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=deployment("studio", 1))
    (slot,) = running_sidecars(kubelet, 1)
    token = admin_token(control_plane, namespace)

    def prices() -> dict:
        return sidecar_admin(slot, token, "/admin/usage")["prices"] or {}

    first = wait_until(
        lambda: (p := prices()).get("fileAsOf") == "2026-11-15" and p,
        30,
        what="the sidecar to report the ConfigMap's table",
    )
    assert first["file"].endswith(f"/{KEY}") and first["fileModels"] == 1
    with openai.OpenAI(
        base_url=f"http://{slot.ip}:{DATA_PORT}/v1", api_key="sk-app", max_retries=0
    ) as client_:
        answer = client_.chat.completions.create(
            model="sim-model", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert answer.usage is not None
    usage = sidecar_admin(slot, token, "/admin/usage")
    (row,) = [r for r in usage["series"] if r["model"] == "sim-model"]
    assert float(row["costUSD"]) == answer.usage.prompt_tokens  # $1 per input token: the file's

    # The platform team edits the ConfigMap; the kubelet's next sync swaps the volume's files.
    control_plane.api.patch(
        f"/api/v1/namespaces/{namespace}/configmaps/{PRICES}",
        {"data": {KEY: table("2026-12-01", 2_000_000)}},
    )
    volume.refresh()
    wait_until(
        lambda: prices().get("fileAsOf") == "2026-12-01",
        30,
        what="the running sidecar to re-read the changed table",
    )
    assert prices()["fileModels"] == 1
