"""The injection webhook: its TLS set-up and the mutation of new Pods.

The MutatingWebhookConfiguration itself is a manifest of the chart (``failurePolicy: Ignore``,
a short timeout, selectors that only send opted-in Pods); the operator serves the endpoint
``/inject`` and keeps the configuration's ``caBundle`` equal to the CA it serves with.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import kopf

from sluice_operator import certificates
from sluice_operator.injection import inject, skip_reason, workload_of
from sluice_operator.kube import Kube
from sluice_operator.metrics import OperatorMetrics
from sluice_operator.pod_overrides import InjectionRefused, effective_settings
from sluice_operator.resources import key_secrets, read_policies
from sluice_operator.selection import policies_for
from sluice_operator.settings import OperatorSettings

logger = logging.getLogger("sluice.operator.webhook")


async def prepare_server(
    kube: Kube, settings: OperatorSettings, metrics: OperatorMetrics
) -> kopf.WebhookServer:
    """A kopf webhook server with the operator's certificate; caBundle made current."""
    if settings.webhook_cert_dir:
        directory = Path(settings.webhook_cert_dir)
        ca_pem = (directory / "ca.crt").read_bytes()
        cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    else:
        files = await kube.tls_secret(settings.namespace, settings.webhook_tls_secret)
        if files is None:
            extra = [n.strip() for n in settings.webhook_extra_sans.split(",") if n.strip()]
            made = certificates.generate(settings.webhook_service, settings.namespace, extra)
            files = {"ca.crt": made.ca_pem, "tls.crt": made.cert_pem, "tls.key": made.key_pem}
            if not await kube.create_tls_secret(
                settings.namespace, settings.webhook_tls_secret, files
            ):  # another replica made one first: serve theirs
                files = await kube.tls_secret(settings.namespace, settings.webhook_tls_secret)
        assert files is not None
        directory = Path(tempfile.mkdtemp(prefix="sluice-webhook-"))
        for name, content in files.items():
            (directory / name).write_bytes(content)
            (directory / name).chmod(0o600)
        ca_pem = files["ca.crt"]
        cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    metrics.set_certificate_expiry(certificates.expiry_timestamp(cert_file.read_bytes()))
    if not await kube.set_ca_bundle(settings.webhook_configuration, ca_pem):
        logger.warning(
            "MutatingWebhookConfiguration %s not found: pods will not be injected until it exists",
            settings.webhook_configuration,
        )
    return kopf.WebhookServer(
        addr=settings.webhook_addr,
        port=settings.webhook_port,
        certfile=str(cert_file),
        pkeyfile=str(key_file),
    )


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
) -> dict[str, Any] | None:
    """The injected Pod, or None when nothing is to be done."""
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
    logger.info("injecting the sidecar into a pod of %s/%s", namespace, workload_of(body))
    return injected
