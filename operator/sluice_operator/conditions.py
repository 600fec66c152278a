"""Status conditions in the Kubernetes convention (type, status, reason, message, times)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sluice_operator.status import Condition, ConditionDraft

MAX_MESSAGE = 32768  # metav1.Condition's bound on message


def condition(
    kind: str, ok: bool | None, reason: str, message: str, generation: int | None
) -> ConditionDraft:
    return ConditionDraft(
        type=kind,
        status="Unknown" if ok is None else ("True" if ok else "False"),
        reason=reason,
        message=message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…",
        observed_generation=generation,
    )


def merge_conditions(
    old: list[Mapping[str, Any]] | None, new: list[ConditionDraft], now: str
) -> list[Condition]:
    """New conditions replacing old ones of the same type; the transition time moves only when
    the status changes (so watchers see when something really happened)."""
    previous = {c["type"]: c for c in old or []}
    merged = []
    for item in new:
        before = previous.get(item.type)
        changed = before is None or before.get("status") != item.status
        stamp = now if before is None or changed else before.get("lastTransitionTime", now)
        merged.append(Condition(**item.model_dump(), last_transition_time=stamp))
    return merged


def same_conditions(old: list[Mapping[str, Any]] | None, new: list[ConditionDraft]) -> bool:
    """Equal but for the transition times: nothing to write."""
    written = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in old or []]
    wanted = [{k: v for k, v in c.patch().items() if k != "lastTransitionTime"} for c in new]
    return written == wanted
