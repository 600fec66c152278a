"""Kubeconfig files for the local API server: one cluster, one token user, one context."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_kubeconfig(
    path: Path,
    server: str,
    ca_file: Path,
    token: str,
    user: str = "user",
    namespace: str = "default",
) -> Path:
    """Write a kubeconfig that reaches ``server`` trusting ``ca_file`` with ``token``."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "sluice-e2e",
                "cluster": {"server": server, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": "sluice-e2e",
                "context": {"cluster": "sluice-e2e", "user": user, "namespace": namespace},
            }
        ],
        "current-context": "sluice-e2e",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
