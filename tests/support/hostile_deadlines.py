"""The deadlines the hostile suites call with: a short one for stalls, a generous one otherwise.

Only the deadline ends a stall, so a stall meets a short deadline and the suite stays fast.
Every other behaviour's expected answer must not depend on the machine's speed: a retried 429
or 503 (two attempts), a long error body or 32 MiB to read or inflate can outlast 0.4 s on a
busy machine, and the deadline would turn the answer into a 504. Those meet a deadline they
never come near on loopback. ``sidecars_by_deadline`` starts one sidecar per deadline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.hostile.conftest import start_hostile_sidecar
from tests.hostile.outcomes import STALLS
from tests.support.hostile_upstream import HostileUpstream
from tests.support.sidecar import SidecarHandle

STALL_DEADLINE_S = 0.4
DEADLINE_S = 5.0
SLACK_S = 0.6  # the 504 is answered at the deadline; this covers a busy machine, not a hang


def deadline_for(behaviour: str) -> float:
    return STALL_DEADLINE_S if behaviour in STALLS else DEADLINE_S


async def sidecars_by_deadline(
    upstream: HostileUpstream, secrets_dir: Path, **spec: Any
) -> dict[float, SidecarHandle]:
    """A hostile sidecar for each deadline (closed by the caller); ``spec``: policy fields."""
    return {
        deadline: await start_hostile_sidecar(
            upstream,
            secrets_dir / str(deadline),
            defaults={"timeoutSeconds": deadline},
            **spec,
        )
        for deadline in (STALL_DEADLINE_S, DEADLINE_S)
    }
