"""The project's container images, built by ``scripts/images`` and run with buildah.

There is no container engine here that may run a container (``podman run`` is refused by the
sandbox when it sets rlimits), but ``buildah run --isolation chroot`` runs a command inside an
image's root filesystem, on the host's network. That is enough to start an image's own
entrypoint and talk to it on loopback. Used by ``tests/images/`` and the e2e tests that run
the operator's Pod from its image.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from e2e.harness import processes

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "images"
TOOLS = ("buildah", "podman", "debootstrap")
BUILD_TIMEOUT_S = 1800


class ImageBuildFailed(Exception):
    """``scripts/images`` failed; ``str()`` has its reason and the tail of its output."""


def missing_tools() -> list[str]:
    """The image tools this machine lacks (``scripts/system-packages`` installs them)."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def checkout_tag() -> str:
    """The image tag for this checkout: worktrees testing at once never share an image."""
    return os.environ.get("SLUICE_IMAGE_TAG") or (
        "test-" + hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]
    )


def build_images(log_path: Path) -> dict[str, Image]:
    """Run ``scripts/images`` (cached: well under a second when nothing changed); images by
    role, tagged ``checkout_tag()``."""
    with log_path.open("w") as log:
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
            cwd=ROOT,
            env={**os.environ, "SLUICE_IMAGE_TAG": checkout_tag()},
        )
    if result.returncode != 0:
        raise ImageBuildFailed(
            f"scripts/images exited with {result.returncode}:\n" + processes.tail_file(log_path, 30)
        )
    names = dict(line.split("=", 1) for line in result.stdout.split())
    return {role: Image(name) for role, name in names.items()}


@dataclass(frozen=True)
class Image:
    """One image in the local containers-storage, e.g. ``localhost/sluice-sidecar:dev``."""

    name: str

    def config(self) -> dict[str, Any]:
        """The image's OCI config: Entrypoint, Cmd, User, Env, Labels, ExposedPorts..."""
        inspected = _buildah("inspect", "--type", "image", self.name)
        return json.loads(inspected)["OCIv1"]["config"]

    def entrypoint(self) -> list[str]:
        """What the image runs when started with no command: Entrypoint + Cmd."""
        config = self.config()
        return [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]

    def run(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        volumes: Mapping[Path, str] | None = None,
    ) -> Container:
        """Start ``argv`` in a fresh container of this image (as the image's USER), with
        ``volumes`` (host path: container path) mounted read-only."""
        mounts = [Mount(source, target) for source, target in (volumes or {}).items()]
        return Container(self, argv, log_path, env or {}, mounts)

    def exec(
        self, argv: Sequence[str], timeout: float = 60, mounts: Sequence[Mount] = ()
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` to completion in a throwaway container, with ``mounts``; output
        captured (``tests/support/image_exec.py`` when the output must not be lost)."""
        container = self.create_container()
        try:
            return subprocess.run(
                run_command(container, argv, mounts=mounts),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        finally:
            remove_container(container)

    def create_container(self) -> str:
        """A new working container of this image (its id); ``remove_container`` ends it."""
        name = f"sluice-{secrets.token_hex(4)}"
        return _buildah("from", "--pull-never", "--quiet", "--name", name, self.name).strip()


@dataclass(frozen=True)
class Mount:
    """A host path mounted into a container, read-only unless said otherwise."""

    source: Path
    target: str
    read_only: bool = True


def run_command(
    container: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    mounts: Sequence[Mount] = (),
    user: str | None = None,
) -> list[str]:
    """The ``buildah run`` command line that runs ``argv`` inside ``container``."""
    command = ["buildah", "run", "--isolation", "chroot"]
    if user is not None:
        command += ["--user", user]
    for key, value in (env or {}).items():
        command += ["--env", f"{key}={value}"]
    for mount in mounts:
        command += [
            "--volume",
            f"{mount.source}:{mount.target}:{'ro' if mount.read_only else 'rw'}",
        ]
    return [*command, container, "--", *argv]


def resolve_in_container(container: str, path: str) -> str:
    """``path`` with symlinks in its parents resolved inside the container's root filesystem.

    ``buildah run --volume`` silently drops a mount whose target passes through a symlink
    (Debian's ``/var/run -> /run``, where the ServiceAccount token goes), so mount targets are
    resolved first.
    """
    root = Path(_buildah("mount", container).strip())
    resolved = PurePosixPath("/")
    for part in PurePosixPath(path).parts[1:]:  # one level of links: enough for images
        candidate = resolved / part
        on_disk = root / candidate.relative_to("/")
        if on_disk.is_symlink():
            link = PurePosixPath(os.readlink(on_disk))
            candidate = PurePosixPath(
                os.path.normpath(link if link.is_absolute() else resolved / link)
            )
        resolved = candidate
    return str(resolved)


def remove_container(container: str) -> None:
    _buildah("rm", container)


class Container:
    """A process running inside a working container of an image; ``stop()`` removes both."""

    def __init__(
        self,
        image: Image,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str],
        mounts: Sequence[Mount],
    ) -> None:
        self.image = image
        self.id = image.create_container()
        self.process = processes.ManagedProcess(
            f"container-{self.id[:12]}", run_command(self.id, argv, env, mounts), log_path
        )

    def running(self) -> bool:
        return self.process.running()

    def tail(self, lines: int = 40) -> str:
        return self.process.tail(lines)

    def stop(self) -> None:
        try:
            self.process.stop(timeout=10)
        finally:
            remove_container(self.id)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _buildah(*args: str) -> str:
    result = subprocess.run(
        ["buildah", *args], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"buildah {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout
