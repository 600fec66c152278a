"""What the mutating webhook adds to a Pod: the sidecar, its volumes, the apps' base URLs.

Pure functions over plain dictionaries (the Pod as the API server sends it), so the exact
patch is unit-tested without a cluster. Injection is idempotent: a Pod that already has the
sidecar is returned unchanged.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from sluice_operator.pod_overrides import RESOURCE_ANNOTATIONS
from sluice_operator.settings import OperatorSettings, report_url
from sluice_sidecar.contract import pod as contract
from sluice_sidecar.contract.pod import PodEnv

SIDECAR_NAME = "sluice-proxy"
INJECT_ANNOTATION = "sluice.dev/inject"
INJECTED_LABEL = "sluice.dev/injected"
WORKLOAD_LABEL = "sluice.dev/workload"
# unset or "true": set the apps' base URLs on every app container; "except-env-from": not on
# a container taking variables from envFrom; "false": never.
ENV_OPT_OUT_ANNOTATION = "sluice.dev/inject-base-urls"
EXCEPT_ENV_FROM = "except-env-from"
BASE_URLS_SKIPPED_ANNOTATION = "sluice.dev/base-urls-skipped"  # containers left to their envFrom
NATIVE_SIDECAR_MINOR = 29  # restartPolicy: Always init containers are on by default from 1.29

Pod = dict[str, Any]


def config_map_name(workload: str) -> str:
    return f"sluice-config-{workload}"[:253]


def workload_of(pod: Pod) -> str:
    """The Deployment (or other owner) a Pod belongs to, from what a new Pod already carries."""
    metadata = pod.get("metadata") or {}
    labels = metadata.get("labels") or {}
    if WORKLOAD_LABEL in labels:
        return labels[WORKLOAD_LABEL]
    template_hash = labels.get("pod-template-hash")
    for owner in metadata.get("ownerReferences") or []:
        name = owner.get("name", "")
        if (
            owner.get("kind") == "ReplicaSet"
            and template_hash
            and name.endswith("-" + template_hash)
        ):
            return name[: -len(template_hash) - 1]
        if name:
            return name
    generate = metadata.get("generateName", "")
    return generate.rstrip("-") or metadata.get("name", "pod")


def is_injected(pod: Pod) -> bool:
    spec = pod.get("spec") or {}
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    return any(c.get("name") == SIDECAR_NAME for c in containers)


def skip_reason(pod: Pod) -> str | None:
    """Why the webhook leaves a Pod it was sent as it is; None: inject it."""
    metadata, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    if is_injected(pod):
        return "it already has the sidecar"
    if spec.get("hostNetwork"):
        # Its ports would be the node's: every such pod on a node would collide on them.
        return "hostNetwork pods are never injected"
    gestures = (metadata.get("labels") or {}, metadata.get("annotations") or {})
    if any(found.get(INJECT_ANNOTATION) == "false" for found in gestures):
        return f"it opted out ({INJECT_ANNOTATION}=false)"
    return None


def sidecar_container(settings: OperatorSettings, workload: str, native: bool) -> dict[str, Any]:
    http_get = {"port": settings.admin_port, "scheme": "HTTP"}
    container: dict[str, Any] = {
        "name": SIDECAR_NAME,
        "image": settings.sidecar_image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["--config-file", contract.CONFIG_FILE, "--admin-host", "0.0.0.0"],
        "env": [
            {"name": PodEnv.ADMIN_TOKEN_FILE, "value": contract.TOKEN_FILE},
            {"name": PodEnv.SECRETS_DIR, "value": contract.SECRETS_DIR},
            {"name": PodEnv.DATA_PORT, "value": str(settings.data_port)},
            {"name": PodEnv.ADMIN_PORT, "value": str(settings.admin_port)},
            {"name": PodEnv.WORKLOAD, "value": workload},
            {"name": PodEnv.USAGE_REPORT_URL, "value": report_url(settings)},
            {"name": PodEnv.STATE_DIR, "value": contract.STATE_DIR},
            {"name": PodEnv.POD_UID, "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {
                "name": PodEnv.NAMESPACE,
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            *otel_resource_env(workload),
            *otel_export_env(settings),
        ],
        "ports": [
            {"name": "sluice-llm", "containerPort": settings.data_port, "protocol": "TCP"},
            {
                "name": contract.ADMIN_PORT_NAME,
                "containerPort": settings.admin_port,
                "protocol": "TCP",
            },
        ],
        "readinessProbe": {"httpGet": {**http_get, "path": "/readyz"}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {**http_get, "path": "/healthz"}, "periodSeconds": 10},
        "startupProbe": {
            "httpGet": {**http_get, "path": "/healthz"},
            "periodSeconds": 1,
            "failureThreshold": 30,
        },
        "resources": json.loads(settings.sidecar_resources),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "sluice-config", "mountPath": contract.CONFIG_DIR, "readOnly": True},
            {"name": "sluice-admin-token", "mountPath": contract.TOKEN_DIR, "readOnly": True},
            {"name": "sluice-provider-keys", "mountPath": contract.SECRETS_DIR, "readOnly": True},
            {"name": "sluice-state", "mountPath": contract.STATE_DIR},
            *price_table_mounts(settings),
        ],
    }
    if native:
        container["restartPolicy"] = "Always"
    return container


# Helper variables for the downward API, expanded by the kubelet into OTEL_RESOURCE_ATTRIBUTES
# as $(VAR) (defined before it: expansion sees earlier entries only), as the OpenTelemetry
# Operator's injection does. The pod's name is not known at admission (generateName).
POD_NAME_VAR = "OTEL_RESOURCE_ATTRIBUTES_POD_NAME"
NAMESPACE_VAR = "OTEL_RESOURCE_ATTRIBUTES_NAMESPACE"


def otel_resource_env(workload: str) -> list[dict[str, Any]]:
    """The Kubernetes resource attributes and service name of the sidecar's OTLP export."""
    attributes = {
        "k8s.namespace.name": f"$({NAMESPACE_VAR})",
        "k8s.pod.name": f"$({POD_NAME_VAR})",
        "k8s.deployment.name": workload,
    }
    return [
        {"name": POD_NAME_VAR, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": NAMESPACE_VAR, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {
            "name": "OTEL_RESOURCE_ATTRIBUTES",
            "value": ",".join(f"{key}={value}" for key, value in attributes.items()),
        },
        {"name": "OTEL_SERVICE_NAME", "value": workload},
    ]


OTEL_HEADERS_KEY = "headers"  # the key of settings.otel_headers_secret read as the headers


def otel_export_env(settings: OperatorSettings) -> list[dict[str, Any]]:
    """Where and how the sidecar exports OTLP, from the chart; nothing without an endpoint."""
    if not settings.otel_endpoint:
        return []
    values = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": settings.otel_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": settings.otel_protocol,
        "OTEL_METRIC_EXPORT_INTERVAL": settings.otel_metric_export_interval_ms,
        "OTEL_TRACES_SAMPLER": settings.otel_traces_sampler,
        "OTEL_TRACES_SAMPLER_ARG": settings.otel_traces_sampler_arg,
    }
    env: list[dict[str, Any]] = [
        {"name": name, "value": str(value)} for name, value in values.items() if value is not None
    ]
    if settings.otel_headers_secret:
        # Optional: a missing Secret costs the export its credentials, never the app's Pod.
        reference = {
            "name": settings.otel_headers_secret,
            "key": OTEL_HEADERS_KEY,
            "optional": True,
        }
        env.append({"name": "OTEL_EXPORTER_OTLP_HEADERS", "valueFrom": {"secretKeyRef": reference}})
    return env


# The chart's price table (prices.configMap), where a policy's pricingFile names it. A
# ConfigMap volume without subPath: the kubelet swaps its files when the ConfigMap changes, and
# the sidecar re-reads the file (economics/price_file.py). Belongs with contract/pod.py's paths.
PRICES_VOLUME = "sluice-prices"
PRICES_DIR = contract.PRICES_DIR


def price_table_volumes(settings: OperatorSettings) -> list[dict[str, Any]]:
    """The price-table ConfigMap as a volume: its one key as a file, optional, so a namespace
    without the ConfigMap still starts its pods (a policy naming the file then says why)."""
    if settings.prices_config_map is None:
        return []
    key = settings.prices_key
    source = {"name": settings.prices_config_map, "optional": True}
    return [{"name": PRICES_VOLUME, "configMap": {**source, "items": [{"key": key, "path": key}]}}]


def price_table_mounts(settings: OperatorSettings) -> list[dict[str, Any]]:
    if settings.prices_config_map is None:
        return []
    return [{"name": PRICES_VOLUME, "mountPath": PRICES_DIR, "readOnly": True}]


def after_native_sidecars(init: list[dict[str, Any]], sidecar: dict[str, Any]) -> list[Any]:
    """The init containers with ours right after the last native sidecar already there (a
    mesh proxy such as istio-proxy): native sidecars start in order and stop in reverse, so
    ours starts once the mesh runs and stops before it, and its final usage report still has
    the mesh's network path. Plain init containers after that point run with ours up."""
    native = [i for i, c in enumerate(init) if c.get("restartPolicy") == "Always"]
    at = native[-1] + 1 if native else 0
    return [*init[:at], sidecar, *init[at:]]


BASE_URL_NAMES = frozenset({"OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"})
PROXY_PREFIX = "sluice.dev/proxy-"
PROXY_ANNOTATIONS = tuple(sorted(RESOURCE_ANNOTATIONS))


def base_url_env(settings: OperatorSettings) -> list[dict[str, str]]:
    return [
        {"name": "OPENAI_BASE_URL", "value": f"http://127.0.0.1:{settings.data_port}/v1"},
        {"name": "ANTHROPIC_BASE_URL", "value": f"http://127.0.0.1:{settings.data_port}"},
    ]


def set_base_urls(
    containers: list[dict[str, Any]], settings: OperatorSettings, metadata: dict[str, Any]
) -> list[str]:
    """Point the app containers at the sidecar; the names of those left alone for envFrom.

    A container's own ``env`` entry wins. Otherwise the sidecar's URLs are set, and, being
    ``env`` entries, they beat whatever the container takes through ``envFrom``: envFrom
    usually carries the API key, and a pod whose calls bypass the sidecar would be silently
    ungoverned. ``sluice.dev/inject-base-urls: "except-env-from"`` leaves such containers to
    their ConfigMaps and Secrets (the webhook does not read them: least privilege) and names
    them in ``sluice.dev/base-urls-skipped``; ``"false"`` never sets the URLs."""
    mode = (metadata.get("annotations") or {}).get(ENV_OPT_OUT_ANNOTATION)
    if mode == "false":
        return []
    skipped = []
    for app in containers:
        if app.get("envFrom") and mode == EXCEPT_ENV_FROM:
            skipped.append(app.get("name", ""))
            continue
        present = {e.get("name") for e in app.get("env") or []}
        app["env"] = (app.get("env") or []) + [
            e for e in base_url_env(settings) if e["name"] not in present
        ]
    if skipped:
        metadata.setdefault("annotations", {})[BASE_URLS_SKIPPED_ANNOTATION] = ",".join(skipped)
    return skipped


def injection_warnings(pod: Pod, settings: OperatorSettings) -> list[str]:
    """What ``kubectl apply`` should tell the Pod's author: where the Pod is injected
    differently from what it seems to ask for (admission warnings: short, and never an env
    value, which may be a credential)."""
    metadata, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    annotations = metadata.get("annotations") or {}
    warnings = [
        f"{name} is not a sidecar setting and is ignored (known: {', '.join(PROXY_ANNOTATIONS)})"
        for name in sorted(annotations)
        if name.startswith(PROXY_PREFIX) and name not in PROXY_ANNOTATIONS
    ]
    mode = annotations.get(ENV_OPT_OUT_ANNOTATION)
    if mode not in (None, "true", "false", EXCEPT_ENV_FROM):
        warnings.append(
            f"{ENV_OPT_OUT_ANNOTATION}: {mode!r} is not true, false or {EXCEPT_ENV_FROM};"
            " base URLs are set as for true"
        )
    if mode == "false":
        return warnings
    sidecar = base_url_env(settings)
    for app in spec.get("containers") or []:
        name = app.get("name", "")
        own = sorted({e.get("name") for e in app.get("env") or []} & BASE_URL_NAMES)
        elsewhere = [e for e in app.get("env") or [] if e.get("name") in own and e not in sidecar]
        if elsewhere:
            warnings.append(
                f"container {name!r} sets {', '.join(e['name'] for e in elsewhere)} itself:"
                " calls through it bypass the sidecar (ungoverned)"
            )
        if app.get("envFrom") and mode == EXCEPT_ENV_FROM:
            warnings.append(
                f"container {name!r} is left to its envFrom base URLs ({ENV_OPT_OUT_ANNOTATION})"
            )
        elif app.get("envFrom") and len(own) < len(BASE_URL_NAMES):
            warnings.append(
                f"container {name!r} takes envFrom: the sidecar's base URLs override any set"
                f" there ({ENV_OPT_OUT_ANNOTATION}: {EXCEPT_ENV_FROM} leaves them)"
            )
    return warnings


def inject(
    pod: Pod,
    settings: OperatorSettings,
    *,
    server_minor: int,
    key_secrets: dict[str, list[str]] | None = None,
) -> Pod:
    """The Pod with the sidecar injected (a new dictionary; the input is not changed)."""
    if is_injected(pod):
        return pod
    pod = copy.deepcopy(pod)
    metadata = pod.setdefault("metadata", {})
    spec = pod.setdefault("spec", {})
    workload = workload_of(pod)
    native = server_minor >= NATIVE_SIDECAR_MINOR
    container = sidecar_container(settings, workload, native)

    set_base_urls(spec.get("containers") or [], settings, metadata)
    if native:
        spec["initContainers"] = after_native_sidecars(spec.get("initContainers") or [], container)
    else:
        spec["containers"] = [*(spec.get("containers") or []), container]

    volumes = [
        {
            "name": "sluice-config",
            "configMap": {"name": config_map_name(workload), "optional": True},
        },
        {"name": "sluice-admin-token", "secret": {"secretName": settings.admin_token_secret}},
        provider_keys_volume(key_secrets or {}),
        # Spend survives a sidecar restart: the state file lives as long as the Pod.
        {"name": "sluice-state", "emptyDir": {"sizeLimit": "16Mi"}},
        *price_table_volumes(settings),
    ]
    spec["volumes"] = [*(spec.get("volumes") or []), *volumes]
    # The sidecar image may live in a private registry the app's own secrets do not cover.
    pull = spec.get("imagePullSecrets") or []
    present = {secret.get("name") for secret in pull}
    wanted = [n.strip() for n in settings.sidecar_image_pull_secrets.split(",") if n.strip()]
    if wanted:
        spec["imagePullSecrets"] = pull + [{"name": n} for n in wanted if n not in present]
    labels = metadata.setdefault("labels", {})
    labels[INJECTED_LABEL] = "true"
    labels[WORKLOAD_LABEL] = workload
    metadata.setdefault("annotations", {})[INJECTED_LABEL] = settings.sidecar_image
    return pod


def provider_keys_volume(key_secrets: dict[str, list[str]]) -> dict[str, Any]:
    """Every provider key Secret the workload's policies name, as <secret>/<key> files."""
    if not key_secrets:
        return {
            "name": "sluice-provider-keys",
            "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"},
        }
    sources = [
        {
            "secret": {
                "name": secret,
                "optional": True,
                "items": [{"key": key, "path": f"{secret}/{key}"} for key in sorted(keys)],
            }
        }
        for secret, keys in sorted(key_secrets.items())
    ]
    return {"name": "sluice-provider-keys", "projected": {"sources": sources}}
