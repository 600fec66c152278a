"""Kubernetes label selectors, evaluated locally against a workload's pod template labels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar


class _SelectingSpec(Protocol):
    @property
    def selector(self) -> Mapping[str, Any] | None: ...


class Selecting(Protocol):
    """A resource model with ``spec.selector``: ``LlmPolicy`` and ``LlmBudget``."""

    @property
    def spec(self) -> _SelectingSpec: ...


S = TypeVar("S", bound=Selecting)


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """``matchLabels`` and ``matchExpressions`` semantics; an empty selector matches all."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def policies_for(labels: Mapping[str, str], resources: Iterable[S]) -> list[S]:
    """The policies (or budgets) whose selector matches a workload's pod labels, in order.

    The one answer to "which resources apply here", for the reconciler, the webhook and the
    budget aggregator; precedence among them is the compiler's (``compile_policies``).
    """
    return [r for r in resources if selector_matches(r.spec.selector, labels)]
