"""Test harness for a real local Kubernetes control plane (etcd, kube-apiserver,
kube-controller-manager), built by ``e2e/k8s/build`` and started by ``e2e/conftest.py``.

Later tests import the public surface from here; the modules behind it each do one job:
``binaries`` finds the built programs, ``certs`` makes the throwaway PKI, ``processes``
runs and reaps child process groups, ``controlplane`` starts the components, ``client``
talks JSON to the API server, ``kubeconfig`` and ``rbac`` hand out credentials, and
``kubelet`` plays kubelet for Pods, ``standins`` serves the admin API of hundreds of injected
sidecars from one thread (for the operator benchmark).
"""

from e2e.harness.binaries import Binaries, BinariesUnavailable, find_binaries
from e2e.harness.client import ApiClient, ApiError
from e2e.harness.controlplane import ControlPlane, ControlPlaneError
from e2e.harness.kubelet import FakeKubelet, IpAllocator, Launch, PodSlot

__all__ = [
    "ApiClient",
    "ApiError",
    "Binaries",
    "BinariesUnavailable",
    "ControlPlane",
    "ControlPlaneError",
    "FakeKubelet",
    "IpAllocator",
    "Launch",
    "PodSlot",
    "find_binaries",
]
