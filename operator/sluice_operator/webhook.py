"""The injection webhook: the mutation of new Pods (its TLS: ``certificates``).

The MutatingWebhookConfiguration itself is a manifest of the chart (``failurePolicy: Ignore``,
a short timeout, selectors that only send opted-in Pods); the operator serves the endpoint
``/inject`` and keeps the configuration's ``caBundle`` equal to the CA it serves with.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from sluice_operator.injection import inject, injection_warnings, skip_reason, workload_of
from sluice_operator.kube import Kube
from sluice_operator.pod_overrides import InjectionRefused, effective_settings
from sluice_operator.resources import key_secrets, read_policies
from sluice_operator.selection import policies_for
from sluice_operator.settings import OperatorSettings

logger = logging.getLogger("sluice.operator.webhook")


async def provider_key_secrets(
    kube: Kube, namespace: str, labels: dict[str, str]
) -> dict[str, list[str]]:
    """Secrets (and keys) named by the valid policies that select a Pod with these labels."""
    policies = read_policies(await kube.policies(namespace))
    return key_secrets(policies_for(labels, [p.model for p in policies if p.model is not None]))


async def mutate_pod(
    body: dict[str, Any],
    namespace: str,
    kube: Kube,
    settings: OperatorSettings,
    server_minor: int,
    dryrun: bool,
    warnings: list[str] | None = None,
) -> dict[str, Any] | None:
    """The injected Pod, or None when nothing is to be done. ``warnings``: kopf's admission
    warnings, extended with what the Pod's author should know about its injection."""
    skipped = skip_reason(body)
    if skipped is not None:
        logger.info("not injecting a pod of %s/%s: %s", namespace, workload_of(body), skipped)
        return None
    try:
        settings = effective_settings(body, settings)
    except InjectionRefused as error:
        logger.warning("refusing a pod of %s/%s: %s", namespace, workload_of(body), error)
        raise kopf.AdmissionError(f"sluice: {error}", code=400) from None
    labels = (body.get("metadata") or {}).get("labels") or {}
    keys = await provider_key_secrets(kube, namespace, labels)
    if not dryrun:
        await kube.admin_token(namespace, settings.admin_token_secret)
    injected = inject(body, settings, server_minor=server_minor, key_secrets=keys)
    if warnings is not None:
        warnings.extend(f"sluice: {warning}" for warning in injection_warnings(body, settings))
    logger.info("injecting the sidecar into a pod of %s/%s", namespace, workload_of(body))
    return injected
