"""A control plane of its own for tests that install the chart with helm, with Services
routed (``services.ServiceProxy``) and fake kubelets that run Pods from the built images.

Used by the ``helm_cluster`` fixture (``e2e/conftest.py``): ``e2e/test_helm_install.py`` and
``e2e/test_quickstart.py`` each get a fresh one, since helm refuses to adopt the cluster-scoped
objects the session control plane's hand-made install (``e2e/sluice.py``) created.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from e2e.harness.controlplane import ControlPlane
from e2e.harness.images import Image
from e2e.harness.kubelet import FakeKubelet, IpAllocator, LaunchFactory
from e2e.harness.pods import image_launch
from e2e.harness.services import ServiceProxy

RELEASE_NAMESPACE = "sluice-system"
OPERATOR_SELECTOR = "app.kubernetes.io/name=sluice,app.kubernetes.io/component=operator"
INJECTED_SELECTOR = "sluice.dev/injected=true"


@dataclass
class HelmCluster:
    cp: ControlPlane
    proxy: ServiceProxy
    helm: Path
    workdir: Path
    ips: IpAllocator
    kubelets: list[FakeKubelet] = field(default_factory=list)

    def helm_run(self, *args: str) -> str:
        result = subprocess.run(
            [str(self.helm), *args, "--kubeconfig", str(self.cp.admin_kubeconfig)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"helm {args[0]}: {result.stderr}\n{self.diagnose()}"
        return result.stdout

    def kubelet(self, namespace: str, selector: str, launch: LaunchFactory) -> FakeKubelet:
        kubelet = FakeKubelet(
            self.cp.api, namespace, selector, launch, self.workdir / "logs", self.ips, 90
        )
        self.kubelets.append(kubelet)
        return kubelet.start()

    def operator_kubelet(self, images: Mapping[str, Image]) -> FakeKubelet:
        """Runs the chart's operator Pod from the operator image, as a kubelet would."""
        by_name = {image.name: image for image in images.values()}
        launch = image_launch(self.cp.api, by_name, self.workdir, self.cp.apiserver_port)
        return self.kubelet(RELEASE_NAMESPACE, OPERATOR_SELECTOR, launch)

    def diagnose(self) -> str:
        """Pods, proxy errors, kubelet errors and each Pod's log tail, for failure messages."""
        lines = [self.cp.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout]
        lines.append(f"service proxy errors: {self.proxy.errors[-5:]}")
        for kubelet in self.kubelets:
            lines.append(f"kubelet {kubelet.namespace} errors: {kubelet.errors}")
            for name in kubelet.slots():
                process = kubelet.process(name)
                if process is not None:
                    lines.append(f"---- pod {name} ----\n{process.tail(40)}")
        return "\n".join(lines)

    def stop(self) -> None:
        for kubelet in reversed(self.kubelets):
            kubelet.stop()
        self.proxy.stop()
        self.cp.stop()
