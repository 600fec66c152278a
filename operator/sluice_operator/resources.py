"""Validated views of the sluice.dev resources the operator reads, and what it derives from them.

The models (``LlmPolicy``, ``LlmBudget``) live in the contract package ``sluice_sidecar.contract``;
this module pairs each model with the raw body it came from (whose ``metadata`` and ``status``
the operator writes back), drops what does not validate, and answers the questions several
modules ask: which provider-key Secrets policies name, a budget's rule as the sidecar enforces it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from sluice_operator.kube import Body
from sluice_sidecar.contract import LlmBudget, LlmPolicy, config_problems
from sluice_sidecar.contract.budget_maths import BudgetRule, build_rules

logger = logging.getLogger("sluice.operator.resources")


@dataclass(frozen=True)
class Policy:
    """An LlmPolicy body with its model, or the reasons it does not validate."""

    body: Body
    model: LlmPolicy | None
    problems: list[str]


def read_policies(bodies: Iterable[Body]) -> list[Policy]:
    policies = []
    for body in bodies:
        try:
            policies.append(Policy(body, LlmPolicy.model_validate(body), []))
        except ValidationError as error:
            policies.append(Policy(body, None, config_problems(error)))
    return policies


@dataclass(frozen=True)
class Budget:
    """One valid LlmBudget: the model and the body it came from (metadata, status)."""

    model: LlmBudget
    body: Body

    @property
    def identity(self) -> str:
        return self.model.identity

    @property
    def status(self) -> Body:
        return self.body.get("status") or {}

    def rule(self) -> BudgetRule | None:
        """The rule as the sidecars enforce it; None when it cannot be compiled (a name the
        sidecar's configuration refuses), which also makes its workloads fail to compile."""
        try:
            (rule,) = build_rules([self.model.compiled()])
        except ValidationError:
            return None
        return rule


def valid_budgets(bodies: Iterable[Body]) -> list[Budget]:
    """The budgets whose spec validates; the others are logged and skipped (never enforced)."""
    budgets = []
    for body in bodies:
        try:
            budgets.append(Budget(LlmBudget.model_validate(body), body))
        except ValidationError as error:
            meta = body.get("metadata") or {}
            logger.warning(
                "LlmBudget %s/%s skipped: %s",
                meta.get("namespace"),
                meta.get("name"),
                "; ".join(config_problems(error)),
            )
    return budgets


def key_secrets(policies: Iterable[LlmPolicy]) -> dict[str, list[str]]:
    """Secret name -> keys, for every apiKeySecretRef of the given policies."""
    found: dict[str, set[str]] = {}
    for policy in policies:
        for provider in policy.spec.providers or []:
            if (ref := provider.api_key_secret_ref) is not None:
                found.setdefault(ref.name, set()).add(ref.key)
    return {name: sorted(keys) for name, keys in sorted(found.items())}


def key_secrets_annotation(policies: Iterable[LlmPolicy]) -> str:
    """``secret/key,...``: the pod-template annotation value that rolls pods when it changes."""
    return ",".join(f"{name}/{key}" for name, keys in key_secrets(policies).items() for key in keys)


def policy_hash(body: Body) -> str:
    """``status.configHash``: a short hash of the policy's spec as written."""
    text = json.dumps(body.get("spec") or {}, sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]
