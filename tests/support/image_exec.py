"""Run a command in a throwaway container of an image and read what it printed.

``buildah run --isolation chroot`` now and then loses a short command's output on a busy
machine: exit status 0 and nothing on stdout (``id -u`` in the sidecar image: 1 run in 60 with
six at once at load 9). So the command writes its output to files in a mounted folder, and no
relay by buildah stands between the command and the test (90 runs in 90 at load 10).
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from e2e.harness.images import Image, Mount

OUTPUT_DIR = "/sluice-test-output"
# sh in the image sends the command's output to the mounted folder, then exits with its status.
REDIRECT = f'exec "$@" > {OUTPUT_DIR}/stdout 2> {OUTPUT_DIR}/stderr'


def exec_in(
    image: Image, argv: Sequence[str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to completion as the image's user; its output read from files."""
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder)
        output.chmod(0o777)  # the image's numeric non-root user writes here
        ran = image.exec(
            ["sh", "-c", REDIRECT, "sh", *argv],
            timeout,
            mounts=[Mount(output, OUTPUT_DIR, read_only=False)],
        )
        stdout, stderr = (_read(output / name) for name in ("stdout", "stderr"))
    return subprocess.CompletedProcess(ran.args, ran.returncode, stdout, stderr + ran.stderr)


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""
