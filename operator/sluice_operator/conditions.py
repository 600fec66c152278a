"""Status conditions in the Kubernetes convention (type, status, reason, message, times)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

Condition = dict[str, Any]


def condition(
    kind: str, ok: bool | None, reason: str, message: str, generation: int | None
) -> Condition:
    return {
        "type": kind,
        "status": "Unknown" if ok is None else ("True" if ok else "False"),
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def merge_conditions(old: list[Condition] | None, new: list[Condition]) -> list[Condition]:
    """New conditions replacing old ones of the same type; the transition time moves only when
    the status changes (so watchers see when something really happened)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    previous = {c["type"]: c for c in old or []}
    merged = []
    for item in new:
        before = previous.get(item["type"])
        changed = before is None or before.get("status") != item["status"]
        stamp = now if changed else before.get("lastTransitionTime", now)
        merged.append({**item, "lastTransitionTime": stamp})
    return merged
