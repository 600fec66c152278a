"""The provider keys a configuration names, checked against the files mounted in this Pod.

In a cluster the operator never reads a provider-key Secret (it has no right to): the webhook
projects every Secret the workload's policies name into the sidecar's secrets directory as an
optional volume (``<dir>/<secret>/<key>``), and the kubelet mounts what exists. So only the
sidecar can tell which keys are there. ``missing_keys`` says which ``apiKeySecretRef`` files
are absent, empty or not regular files, by name (never a value); the admin API reports them
(``missingKeys`` in ``PUT /admin/config`` answers and ``GET /admin/usage``) and the operator
turns them into the policy's ``KeysPresent`` condition. A provider whose key is not mounted
is refused its calls (``KeyMissing``); ``KeyWatch`` builds the running configuration again
once the kubelet has mounted a key it was missing. Called by ``api/admin.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sluice_sidecar.contract.model import ConfigRejected, SidecarConfig
from sluice_sidecar.service.state import SidecarState

logger = logging.getLogger("sluice.keys")
# The kubelet refreshes a Secret volume within its sync period (about a minute): a few stats
# every few seconds, only while a key is missing, add nothing that matters to that delay.
KEY_POLL_S = 2.0


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


class KeyWatch:
    """While the running configuration has providers without their key, look for the key
    files; once one is there, build the configuration again so its calls go through."""

    def __init__(self, state: SidecarState, interval_s: float = KEY_POLL_S) -> None:
        self.state = state
        self.interval_s = interval_s

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.check()

    def check(self) -> None:
        runtime = self.state.runtime
        if runtime is None or not runtime.missing_keys:
            return
        still = {k.provider for k in missing_keys(runtime.config, self.state.settings.secrets_dir)}
        if set(runtime.missing_keys) <= still:
            return
        try:
            self.state.apply(runtime.config, source="a provider key mounted")
        except ConfigRejected as error:  # the new file is no key (too large, not text)
            logger.warning("provider key mounted but unusable: %s", "; ".join(error.problems))


def key_watch_lifespan(state: SidecarState) -> Callable[[object], AsyncIterator[None]]:
    """An aiohttp cleanup context running the ``KeyWatch`` while the admin app serves."""

    async def lifespan(app: object) -> AsyncIterator[None]:
        task = asyncio.create_task(KeyWatch(state).run(), name="sluice-key-watch")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return lifespan
