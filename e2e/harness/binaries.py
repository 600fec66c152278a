"""Find the control-plane programs that ``e2e/k8s/build`` put in its cache directory.

The build script is the single source of truth for the pinned versions and the cache
location (``e2e/k8s/build --print-bin-dir``). When a program is missing, the reason is the
one the build script recorded in ``<cache>/failed/<name>``, or "not built yet"; the pytest
fixtures fail the tests that need it with the same text.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "k8s" / "build"
PROGRAMS = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "helm")


class BinariesUnavailable(Exception):
    """A needed program is missing; ``str()`` is the reason the tests fail with."""


@dataclass(frozen=True)
class Binaries:
    """Paths to the built programs (all in one bin directory)."""

    bin_dir: Path

    def path(self, name: str) -> Path:
        return self.bin_dir / name

    @property
    def etcd(self) -> Path:
        return self.path("etcd")

    @property
    def kube_apiserver(self) -> Path:
        return self.path("kube-apiserver")

    @property
    def kube_controller_manager(self) -> Path:
        return self.path("kube-controller-manager")

    @property
    def kubectl(self) -> Path:
        return self.path("kubectl")

    @property
    def helm(self) -> Path:
        return self.path("helm")

    def require(self, *names: str) -> None:
        """Raise BinariesUnavailable naming every missing program and why it is missing."""
        missing = [n for n in names if not os.access(self.path(n), os.X_OK)]
        failed = [n for n in missing if failure_reason(self.bin_dir, n)]
        unbuilt = [n for n in missing if n not in failed]
        reasons = [f"{n}: e2e/k8s/build failed: {failure_reason(self.bin_dir, n)}" for n in failed]
        if unbuilt:
            reasons.append(
                f"{', '.join(unbuilt)} not built (run e2e/k8s/build; expected in {self.bin_dir})"
            )
        if reasons:
            raise BinariesUnavailable("; ".join(reasons))


def bin_dir() -> Path:
    """The bin directory of the pinned build (``SLUICE_K8S_BIN_DIR`` overrides it)."""
    override = os.environ.get("SLUICE_K8S_BIN_DIR")
    if override:
        return Path(override)
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-bin-dir"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return Path(out.stdout.strip())


def failure_reason(directory: Path, name: str) -> str:
    """The reason e2e/k8s/build recorded for failing to build ``name``, or ""."""
    failure = directory.parent / "failed" / name
    if failure.is_file():
        return failure.read_text(errors="replace").strip() or "no reason recorded"
    return ""


def find_binaries(*names: str) -> Binaries:
    """Locate the bin directory and check that ``names`` (default: all) are present."""
    found = Binaries(bin_dir())
    found.require(*(names or PROGRAMS))
    return found


def pinned_versions() -> dict[str, str]:
    """The versions pinned at the top of e2e/k8s/build, e.g. ``{"KUBE": "v1.35.8"}``."""
    found: dict[str, str] = {}
    for line in BUILD_SCRIPT.read_text().splitlines():
        key, sep, rest = line.strip().partition("_VERSION=")
        if sep and key.isupper() and key.isalpha():
            found[key] = rest.split()[0]
    return found
