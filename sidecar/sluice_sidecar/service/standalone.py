"""Standalone mode: run the policies of a local folder, reloading them when files change.

The folder holds the same LlmPolicy YAML that is applied to a cluster; it is compiled by the
same compiler the operator uses. ``SLUICE_*`` overrides (settings.ConfigOverrides) are applied
on top. A change that does not validate is logged and the running configuration stays.

watchfiles (with anyio, about 1 MiB) is imported by name when the watcher starts, after the
sidecar serves: a sidecar run from ``--config-file`` or with ``--no-watch`` never loads it
(docs/performance.md, "Footprint").
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from pathlib import Path

from sluice_sidecar.contract.compiler import CompileError, compile_policies
from sluice_sidecar.contract.economics import WorkloadRef
from sluice_sidecar.contract.loader import PolicyLoadError, read_resource_dir
from sluice_sidecar.contract.model import ConfigRejected, LlmBudget, LlmPolicy, SidecarConfig
from sluice_sidecar.service.settings import ConfigOverrides
from sluice_sidecar.service.state import ApplyResult, SidecarState

logger = logging.getLogger("sluice.standalone")
RESCAN_INTERVAL_S = 1.0


def apply_overrides(config: SidecarConfig, overrides: ConfigOverrides) -> SidecarConfig:
    if overrides.empty:
        return config
    document = config.model_dump(by_alias=True, exclude_unset=False)
    if overrides.default_timeout_seconds is not None:
        document["defaults"]["timeoutSeconds"] = overrides.default_timeout_seconds
    retry = document["retry"]
    if overrides.retry_max_attempts is not None:
        retry["maxAttempts"] = overrides.retry_max_attempts
    if overrides.retry_strategy is not None:
        retry["strategy"] = overrides.retry_strategy
    if overrides.retry_base_delay_ms is not None:
        retry["baseDelayMs"] = overrides.retry_base_delay_ms
        retry["maxDelayMs"] = max(retry["maxDelayMs"], overrides.retry_base_delay_ms)
    for provider in document["providers"]:
        if (url := overrides.provider_base_urls.get(provider["name"])) is not None:
            provider["baseUrl"] = url
    return SidecarConfig.model_validate(document)


Fingerprint = frozenset[tuple[str, int, int]]


def fingerprint(directory: Path) -> Fingerprint:
    """Names, sizes and modification times of the folder's policy files (symlinks followed)."""
    entries = set()
    for path in directory.iterdir():
        if path.suffix in (".yaml", ".yml"):
            try:
                info = path.stat()
            except OSError:
                continue
            entries.add((path.name, info.st_size, info.st_mtime_ns))
    return frozenset(entries)


def load_policy_dir(state: SidecarState, directory: Path) -> ApplyResult:
    """Read, compile and apply the folder; raises ConfigRejected with every problem found."""
    try:
        resources = read_resource_dir(directory)
        config = compile_policies(
            [r for r in resources if isinstance(r, LlmPolicy)],
            [r for r in resources if isinstance(r, LlmBudget)],
            workload=WorkloadRef(namespace="standalone", name=directory.resolve().name or "root"),
        )
        config = apply_overrides(config, state.settings.overrides)
    except PolicyLoadError as error:
        raise ConfigRejected(error.problems) from error
    except CompileError as error:
        raise ConfigRejected([f"{directory}: {error}"]) from error
    return state.apply(config, source=str(directory))


async def watch_policy_dir(
    state: SidecarState, directory: Path, stop: asyncio.Event, *, seen: Fingerprint
) -> None:
    """Reload when the folder's files change, until ``stop`` is set.

    File events wake the loop at once; a periodic tick compares fingerprints too, which catches
    changes made before the watcher was set up and file systems that miss events.
    """
    changes = importlib.import_module("watchfiles").awatch(
        directory,
        stop_event=stop,
        debounce=100,
        step=50,
        rust_timeout=int(RESCAN_INTERVAL_S * 1000),
        yield_on_timeout=True,
    )
    async for _changes in changes:
        current = fingerprint(directory)
        if current == seen:
            continue
        seen = current
        try:
            result = load_policy_dir(state, directory)
        except ConfigRejected as error:
            logger.error(
                "policy change in %s rejected, keeping %s:\n  %s",
                directory,
                state.version,
                "\n  ".join(error.problems),
            )
            continue
        if not result.changed:
            logger.info("policy files changed; the compiled configuration is the same")
