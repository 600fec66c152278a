"""The provider keys a configuration names, checked against the files mounted in this Pod.

In a cluster the operator never reads a provider-key Secret (it has no right to): the webhook
projects every Secret the workload's policies name into the sidecar's secrets directory as an
optional volume (``<dir>/<secret>/<key>``), and the kubelet mounts what exists. So only the
sidecar can tell which keys are there. ``missing_keys`` says which ``apiKeySecretRef`` files
are absent, empty or not regular files, by name (never a value); the admin API reports them
(``missingKeys`` in ``PUT /admin/config`` answers and ``GET /admin/usage``) and the operator
turns them into the policy's ``KeysPresent`` condition. Called by ``api/admin.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sluice_sidecar.contract.model import SidecarConfig


@dataclass(frozen=True, slots=True)
class MissingKey:
    """A key a provider needs that is not mounted: names only."""

    provider: str
    secret: str
    key: str

    def as_json(self) -> dict[str, str]:
        return {"provider": self.provider, "secret": self.secret, "key": self.key}


def missing_keys(config: SidecarConfig, secrets_dir: Path) -> list[MissingKey]:
    """The ``apiKeySecretRef`` keys of ``config`` with no usable file under ``secrets_dir``."""
    missing = []
    for provider in config.providers:
        ref = provider.api_key_secret_ref
        if ref is not None and not _usable(secrets_dir / ref.name / ref.key):
            missing.append(MissingKey(provider.name, ref.name, ref.key))
    return missing


def missing_keys_of(document: Any, secrets_dir: Path) -> list[MissingKey]:
    """The same for a raw document; nothing when it is not a valid configuration."""
    try:
        config = SidecarConfig.model_validate(document)
    except ValidationError:
        return []
    return missing_keys(config, secrets_dir)


def _usable(path: Path) -> bool:
    """A non-empty regular file (what the kubelet projects for a present key); a stat only,
    the key itself is read when the configuration is applied."""
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:  # a name too long, a loop of links: not a key either
        return False
