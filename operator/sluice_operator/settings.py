"""Operator settings: one frozen model, read from SLUICE_OPERATOR_* variables in one place."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sluice_sidecar.contract import pod

ENV_PREFIX = "SLUICE_OPERATOR_"


class OperatorSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    sidecar_image: str = Field(
        default="ghcr.io/sluice-dev/sluice-sidecar:0.1.0", description="Injected sidecar image."
    )
    sidecar_resources: str = Field(
        default='{"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}',
        description="Injected sidecar's resources: a JSON ResourceRequirements object.",
    )
    sidecar_image_pull_secrets: str = Field(
        default="", description="Comma-separated Secrets added to injected Pods' imagePullSecrets."
    )
    admin_port: int = Field(
        default=pod.ADMIN_PORT, description="Sidecar admin port the operator pushes to."
    )
    data_port: int = Field(default=pod.DATA_PORT, description="Sidecar LLM API port apps call.")
    admin_token_secret: str = Field(
        default="sluice-sidecar-admin", description="Per-namespace Secret with the admin token."
    )
    push_concurrency: int = Field(default=16, ge=1, description="Sidecars pushed to at once.")
    push_attempts: int = Field(default=5, ge=1, description="Attempts per sidecar and push.")
    push_timeout_s: float = Field(default=5.0, gt=0, description="One push request's timeout.")
    push_backoff_s: float = Field(default=0.2, gt=0, description="First retry delay; doubles.")
    reconcile_debounce_s: float = Field(
        default=0.05,
        ge=0,
        description="A namespace's reconcile waits until its requests pause this long, so a "
        "burst of changes costs one run; 0: no wait.",
    )
    reconcile_debounce_max_s: float = Field(
        default=0.5,
        ge=0,
        description="The longest a reconcile request waits for its burst to end: a steady "
        "stream of changes still reconciles at least this often.",
    )
    namespace: str = Field(default="sluice-system", description="Where the operator runs.")
    webhook_enabled: bool = Field(default=True, description="Serve the injection webhook.")
    webhook_addr: str = Field(default="0.0.0.0", description="Webhook listen address.")
    webhook_port: int = Field(default=9443, description="Webhook HTTPS port.")
    webhook_service: str = Field(
        default="sluice-operator", description="Service in front of the webhook (certificate SAN)."
    )
    webhook_configuration: str = Field(
        default="sluice-sidecar-injector",
        description="MutatingWebhookConfiguration whose caBundle the operator keeps current.",
    )
    webhook_tls_secret: str = Field(
        default="sluice-webhook-tls", description="Secret keeping the generated certificate."
    )
    webhook_cert_dir: str | None = Field(
        default=None, description="Use tls.crt/tls.key/ca.crt from here (cert-manager) instead."
    )
    webhook_cert_validity_s: float = Field(
        default=365 * 86400, gt=0, description="Validity of a generated serving certificate."
    )
    webhook_cert_renew_before_s: float = Field(
        default=30 * 86400,
        gt=0,
        description="Renew a generated serving certificate this long before it expires.",
    )
    webhook_cert_check_interval_s: float = Field(
        default=60,
        gt=0,
        description="How often the certificate's Secret (or mounted files) is checked for "
        "renewal and changes, which are then served without a restart.",
    )
    webhook_extra_sans: str = Field(
        default="", description="Comma-separated extra DNS names or IPs for the certificate."
    )
    usage_interval_s: float = Field(
        default=15.0,
        gt=0,
        description="How often sidecars' usage is collected into budgets (a kopf timer's "
        "interval: read with every other setting when the handlers register).",
    )
    usage_addr: str = Field(default="0.0.0.0", description="Final-usage report listen address.")
    usage_port: int = Field(default=8081, description="Final-usage report port (plain HTTP).")
    metrics_addr: str = Field(default="0.0.0.0", description="Prometheus /metrics listen address.")
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Prometheus /metrics port (the chart sets 8082); None: not served.",
    )
    peering_name: str | None = Field(
        default=None,
        description="ClusterKopfPeering the replicas elect the active one through (the chart: "
        "sluice); None: standalone, for a single replica.",
    )
    peering_priority: int | None = Field(
        default=None,
        ge=0,
        description="This replica's peering priority, the highest live one is active; None: "
        "random, so a new replica takes over or stands by by chance, never ties.",
    )
    peering_lifetime_s: int = Field(
        default=20,
        ge=2,
        description="How long a replica that stopped renewing counts as alive: the bound on "
        "the takeover after a crash (a clean stop hands over at once).",
    )
    usage_report_url: str | None = Field(
        default=None,
        description="URL injected sidecars POST their final usage to; default: the Service.",
    )
    admin_host_override: str | None = Field(
        default=None,
        description="Reach every sidecar at this host instead of its pod IP (tests only).",
    )

    otel_endpoint: str | None = Field(
        default=None,
        description="OTLP endpoint of injected sidecars (OTEL_EXPORTER_OTLP_ENDPOINT); None: "
        "no OTLP export, and none of the otel_* settings below is set on them.",
    )
    otel_protocol: Literal["grpc", "http/protobuf"] | None = Field(
        default=None, description="OTEL_EXPORTER_OTLP_PROTOCOL; None: the SDK's http/protobuf."
    )
    otel_headers_secret: str | None = Field(
        default=None,
        description="Secret (in each app namespace) whose key `headers` injected sidecars read "
        "as OTEL_EXPORTER_OTLP_HEADERS: headers carry tokens, so never a plain value.",
    )
    otel_metric_export_interval_ms: int | None = Field(
        default=None, ge=1, description="OTEL_METRIC_EXPORT_INTERVAL; None: the SDK's 60000."
    )
    otel_traces_sampler: (
        Literal[
            "always_on",
            "always_off",
            "traceidratio",
            "parentbased_always_on",
            "parentbased_always_off",
            "parentbased_traceidratio",
        ]
        | None
    ) = Field(default=None, description="OTEL_TRACES_SAMPLER; None: parentbased_always_on.")
    otel_traces_sampler_arg: str | None = Field(
        default=None, description="OTEL_TRACES_SAMPLER_ARG, e.g. 0.1 for a ratio sampler."
    )

    prices_config_map: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        max_length=253,
        description="ConfigMap (in each app namespace) holding a price table file, mounted "
        "into every injected sidecar at /etc/sluice/prices (optional: a namespace without it "
        "gets an empty folder); None: none mounted.",
    )
    prices_key: str = Field(
        default="prices.yaml",
        pattern=r"^[-_a-zA-Z0-9][-._a-zA-Z0-9]*$",
        max_length=253,
        description="The ConfigMap's key with the table; the file is /etc/sluice/prices/<key>.",
    )

    @field_validator("sidecar_resources")
    @classmethod
    def _resources_are_a_json_object(cls, value: str) -> str:
        if not isinstance(json.loads(value), dict):
            raise ValueError("must be a JSON object (requests, limits)")
        return value


def report_url(settings: OperatorSettings) -> str:
    return settings.usage_report_url or (
        f"http://{settings.webhook_service}.{settings.namespace}.svc:{settings.usage_port}/usage"
    )


def load_operator_settings(environ: Mapping[str, str] | None = None) -> OperatorSettings:
    environ = os.environ if environ is None else environ
    values = {
        field: environ[ENV_PREFIX + field.upper()]
        for field in OperatorSettings.model_fields
        if environ.get(ENV_PREFIX + field.upper())
    }
    return OperatorSettings.model_validate(values)
