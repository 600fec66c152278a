"""docs/quickstart.md followed word for word: every ``bash`` block, in order, in one shell.

On a control plane of its own (``helm_cluster``), with the harness's kubectl and helm first on
PATH and its admin kubeconfig as KUBECONFIG. A fake kubelet runs the operator Pod from the
image the quickstart's own ``scripts/images`` line builds, another runs the sidecar of each
injected ``studio`` Pod; nothing else is prepared. The shell's output is printed (``-s``
shows it) and kept in ``<tmp>/quickstart.out``.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from e2e.harness.helm_cluster import INJECTED_SELECTOR, HelmCluster
from e2e.harness.images import Image
from e2e.sluice import sidecar_launch

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "docs" / "quickstart.md"
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)
# The names the quickstart's `export REGISTRY=localhost TAG=dev` gives the images.
IMAGES = {
    "operator": Image("localhost/sluice-operator:dev"),
    "sidecar": Image("localhost/sluice-sidecar:dev"),
}


def quickstart_script() -> str:
    blocks = BLOCK.findall(QUICKSTART.read_text())
    assert len(blocks) >= 6, "docs/quickstart.md lost its bash blocks"
    steps = [f"echo '$ {n}'\n{block}" for n, block in enumerate(blocks, 1)]
    return "set -euo pipefail\n" + "\n".join(steps)


@pytest.mark.timeout(900)
def test_quickstart_works_when_copied(
    helm_cluster: HelmCluster, images: dict[str, Image], tmp_path: Path
) -> None:
    cluster = helm_cluster
    cluster.operator_kubelet(IMAGES)
    cluster.kubelet(
        "studio", INJECTED_SELECTOR, sidecar_launch(cluster.cp, cluster.workdir / "sidecars")
    )
    env = {
        **os.environ,
        "PATH": f"{cluster.helm.parent}:{os.environ['PATH']}",
        "KUBECONFIG": str(cluster.cp.admin_kubeconfig),
    }
    env.pop("SLUICE_IMAGE_TAG", None)
    result = subprocess.run(
        ["bash", "-c", quickstart_script()],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    output = result.stdout + result.stderr
    (tmp_path / "quickstart.out").write_text(output)
    print(output)
    assert result.returncode == 0, f"{output}\n{cluster.diagnose()}"
    # Step 4 printed the injected Pod with its sidecar; step 5 the policy Ready and synced.
    assert re.search(r"^studio-\S+: sluice-proxy$", result.stdout, re.MULTILINE), output
    synced = r"^llmpolicy\.sluice\.dev/studio\s+True\s+\S+\s+1/1\s"  # kubectl get sluice
    assert re.search(synced, result.stdout, re.MULTILINE), output
    # Step 7 left nothing of Sluice but the CRDs (and the policies in them).
    for kind in ("configmaps", "secrets"):
        names = {i["metadata"]["name"] for i in cluster.cp.api.get(f"/api/v1/{kind}")["items"]}
        assert not {n for n in names if n.startswith("sluice-")}, names
    assert not cluster.cp.api.exists(
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/sluice-sidecar-injector"
    )
