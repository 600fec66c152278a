"""Per-pod settings of the injected sidecar from the Pod's ``sluice.dev/*`` annotations.

``sluice.dev/data-port`` moves the port the app calls; ``sluice.dev/proxy-cpu``,
``proxy-memory``, ``proxy-cpu-limit`` and ``proxy-memory-limit`` replace the chart's
``sidecar.resources`` requests and limits one by one. Each value is validated, and the ports
must not collide with one the Pod's other containers declare: a bad value refuses the Pod
with a message naming it (``InjectionRefused``, answered by the webhook as a denial), instead
of a sidecar that cannot bind its port or a quantity the kubelet rejects later.
Pure functions over the Pod as the API server sends it.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from sluice_operator.settings import OperatorSettings

DATA_PORT_ANNOTATION = "sluice.dev/data-port"
# annotation -> (section of ResourceRequirements, resource)
RESOURCE_ANNOTATIONS = {
    "sluice.dev/proxy-cpu": ("requests", "cpu"),
    "sluice.dev/proxy-memory": ("requests", "memory"),
    "sluice.dev/proxy-cpu-limit": ("limits", "cpu"),
    "sluice.dev/proxy-memory-limit": ("limits", "memory"),
}
# A Kubernetes quantity: a number with an optional binary, decimal or exponent suffix.
QUANTITY = re.compile(
    r"^(?P<number>\d+(\.\d*)?|\.\d+)(?P<suffix>[KMGTPE]i|[mkMGTPE]|[eE][+-]?\d+)?$"
)
SUFFIXES = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    **{s: Decimal(1000) ** (i + 1) for i, s in enumerate("kMGTPE")},
    **{s + "i": Decimal(1024) ** (i + 1) for i, s in enumerate("KMGTPE")},
}


class InjectionRefused(ValueError):
    """A Pod the webhook refuses to admit: the message says which value and why."""


def quantity(value: str) -> Decimal:
    """The amount a Kubernetes quantity stands for; ``InjectionRefused`` when it is none."""
    found = QUANTITY.match(value.strip())
    if found is None:
        raise InjectionRefused(f"{value!r} is not a Kubernetes quantity (e.g. 100m, 128Mi)")
    suffix = found["suffix"] or ""
    if suffix[:1] in ("e", "E"):
        return Decimal(found["number"]) * Decimal(10) ** int(suffix[1:])
    return Decimal(found["number"]) * SUFFIXES[suffix]


def effective_settings(pod: dict[str, Any], settings: OperatorSettings) -> OperatorSettings:
    """The settings to inject this Pod with: the chart's, overridden by its annotations."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    data_port = _data_port(annotations.get(DATA_PORT_ANNOTATION), settings.data_port)
    _check_ports(pod, {data_port: "data", settings.admin_port: "admin"})
    resources = _resources(annotations, json.loads(settings.sidecar_resources))
    return settings.model_copy(
        update={"data_port": data_port, "sidecar_resources": json.dumps(resources)}
    )


def _data_port(value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.strip().isdigit() or not 1024 <= int(value) <= 65535:
        raise InjectionRefused(f"{DATA_PORT_ANNOTATION}: {value!r} is not a port in 1024-65535")
    return int(value)


def _check_ports(pod: dict[str, Any], wanted: dict[int, str]) -> None:
    if len(wanted) < 2:
        raise InjectionRefused(f"{DATA_PORT_ANNOTATION}: the data port equals the admin port")
    spec = pod.get("spec") or {}
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for port in container.get("ports") or []:
            if port.get("containerPort") in wanted:
                raise InjectionRefused(
                    f"the sidecar's {wanted[port['containerPort']]} port"
                    f" {port['containerPort']} is container {container.get('name')!r}'s: set"
                    f" {DATA_PORT_ANNOTATION} (or the chart's sidecar.ports) to a free one"
                )


def _resources(annotations: dict[str, str], resources: dict[str, Any]) -> dict[str, Any]:
    for annotation, (section, resource) in RESOURCE_ANNOTATIONS.items():
        if annotation in annotations:
            value = annotations[annotation]
            try:
                quantity(value)
            except InjectionRefused as error:
                raise InjectionRefused(f"{annotation}: {error}") from None
            resources.setdefault(section, {})[resource] = value.strip()
    for resource in ("cpu", "memory"):
        request = (resources.get("requests") or {}).get(resource)
        limit = (resources.get("limits") or {}).get(resource)
        if request and limit and quantity(request) > quantity(limit):
            raise InjectionRefused(
                f"the sidecar's {resource} request {request} is above its limit {limit}"
                " (sluice.dev/proxy-* annotations and the chart's sidecar.resources)"
            )
    return resources
