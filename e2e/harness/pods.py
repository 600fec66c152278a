"""Run a Pod's container from its image, the way a kubelet would: the fake kubelet's launch
callable for Pods whose image was built here (``images.py``).

From the Pod as the API server stored it: the image's Entrypoint/Cmd replaced by the
container's ``command``/``args`` (Kubernetes' rules), its ``env`` (values and field, Secret and
ConfigMap references) plus ``KUBERNETES_SERVICE_HOST``/``PORT``, its volumes made on disk and
mounted where its ``volumeMounts`` say (emptyDir, Secret, ConfigMap, and projected volumes,
which is how the ServiceAccount admission plugin mounts the token: a TokenRequest for the
Pod's ServiceAccount, bound to the Pod, plus ``kube-root-ca.crt`` and the namespace), and the
user from its ``securityContext``. The container shares the host network, so it listens on
the Pod's 127.0.0.N among others.
"""

from __future__ import annotations

import base64
import functools
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from e2e.harness import processes
from e2e.harness.client import ApiClient, ApiError, JsonObject
from e2e.harness.images import (
    Image,
    Mount,
    remove_container,
    resolve_in_container,
    run_command,
)
from e2e.harness.kubelet import Launch, LaunchFactory, PodSlot

FILE_MODE = 0o644  # projected files are readable by the Pod's non-root user
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class UnsupportedPod(Exception):
    """The Pod uses something this runtime does not emulate (named in the message)."""


def image_launch(
    api: ApiClient, images: Mapping[str, Image], workdir: Path, apiserver_port: int
) -> LaunchFactory:
    """Launch factory: run each Pod's single container from ``images`` (by image name)."""

    def launch(slot: PodSlot) -> Launch:
        spec = slot.pod["spec"]
        if len(spec["containers"]) != 1 or spec.get("initContainers"):
            raise UnsupportedPod("only Pods with exactly one container and no init containers")
        (container,) = spec["containers"]
        image = images.get(container["image"])
        if image is None:
            raise UnsupportedPod(f"image {container['image']} not built here ({sorted(images)})")
        pod_dir = workdir / slot.namespace / slot.name
        volumes = {
            v["name"]: make_volume(api, slot, v, pod_dir / "volumes" / v["name"])
            for v in spec.get("volumes", [])
        }
        container_id = image.create_container()
        mounts = [
            Mount(
                volumes[m["name"]] / m.get("subPath", ""),
                resolve_in_container(container_id, m["mountPath"]),
                read_only=m.get("readOnly", False) or "emptyDir" not in _volume(spec, m["name"]),
            )
            for m in container.get("volumeMounts", [])
        ]
        env = container_env(
            api,
            slot,
            container,
            {
                "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                "KUBERNETES_SERVICE_PORT": str(apiserver_port),
            },
        )
        config = image.config()
        if "command" in container:
            entrypoint = [expand(part, env) for part in container["command"]]
        else:
            entrypoint = config.get("Entrypoint") or []
        if "args" in container:
            arguments = [expand(part, env) for part in container["args"]]
        else:
            arguments = [] if "command" in container else config.get("Cmd") or []
        return Launch(
            argv=run_command(
                container_id,
                [*entrypoint, *(arguments or [])],
                env,
                mounts,
                run_as(spec, container),
            ),
            on_stop=functools.partial(remove_container, container_id),
        )

    return launch


def _volume(spec: JsonObject, name: str) -> JsonObject:
    return next(v for v in spec.get("volumes", []) if v["name"] == name)


def run_as(spec: JsonObject, container: JsonObject) -> str | None:
    """``uid[:gid]`` from the container's, else the Pod's, securityContext; None: the image's."""
    merged = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
    if "runAsUser" not in merged:
        return None
    group = merged.get("runAsGroup")
    return f"{merged['runAsUser']}:{group}" if group is not None else str(merged["runAsUser"])


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known variables replaced, ``$$`` is a literal ``$``,
    anything else left as written."""
    return _REFERENCE.sub(
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text
    )


def container_env(
    api: ApiClient, slot: PodSlot, container: JsonObject, base: Mapping[str, str]
) -> dict[str, str]:
    """``base`` plus the container's ``env``, in order (a value may use earlier ones)."""
    env = dict(base)
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = expand(item["value"], env)
        elif "valueFrom" in item:
            value = _value_from(api, slot, item["valueFrom"])
            if value is not None:
                env[item["name"]] = value
    return env


def _value_from(api: ApiClient, slot: PodSlot, source: JsonObject) -> str | None:
    if "fieldRef" in source:
        return _field(slot, source["fieldRef"]["fieldPath"])
    for kind, path in (("secretKeyRef", "secrets"), ("configMapKeyRef", "configmaps")):
        if kind in source:
            ref = source[kind]
            data = _read(api, slot.namespace, path, ref["name"], ref.get("optional", False))
            value = data.get(ref["key"])
            return None if value is None else value.decode()
    raise UnsupportedPod(f"env valueFrom {sorted(source)}")


def _field(slot: PodSlot, path: str) -> str:
    values = {
        "metadata.name": slot.name,
        "metadata.namespace": slot.namespace,
        "metadata.uid": slot.pod["metadata"]["uid"],
        "status.podIP": slot.ip,
        "spec.serviceAccountName": slot.pod["spec"].get("serviceAccountName", "default"),
        "spec.nodeName": "fake-kubelet",
    }
    if path not in values:
        raise UnsupportedPod(f"fieldRef {path}")
    return values[path]


def make_volume(api: ApiClient, slot: PodSlot, volume: JsonObject, directory: Path) -> Path:
    """Create the volume's files under ``directory`` (an emptyDir stays empty, writable)."""
    directory.mkdir(parents=True, exist_ok=True)
    if "emptyDir" in volume:
        directory.chmod(0o1777)
        return directory
    if "secret" in volume:  # the same files as a projected source of that Secret
        ref = volume["secret"]
        _project(api, slot, {"secret": {**ref, "name": ref["secretName"]}}, directory)
    elif "configMap" in volume:
        _project(api, slot, {"configMap": volume["configMap"]}, directory)
    elif "projected" in volume:
        for source in volume["projected"]["sources"]:
            _project(api, slot, source, directory)
    else:
        raise UnsupportedPod(f"volume {volume['name']}: {sorted(set(volume) - {'name'})}")
    directory.chmod(0o755)
    return directory


def _project(api: ApiClient, slot: PodSlot, source: JsonObject, directory: Path) -> None:
    if "serviceAccountToken" in source:
        token = source["serviceAccountToken"]
        _write(directory, {token["path"]: _request_token(api, slot, token).encode()}, None)
    elif "configMap" in source:
        ref = source["configMap"]
        if ref.get("optional"):
            data = _read(api, slot.namespace, "configmaps", ref["name"], True)
        else:  # kube-root-ca.crt: the controller-manager publishes it just after the namespace
            data = processes.wait_until(
                functools.partial(_read, api, slot.namespace, "configmaps", ref["name"], False),
                30,
                what=f"ConfigMap {slot.namespace}/{ref['name']}",
            )
        _write(directory, data, ref.get("items"))
    elif "secret" in source:
        ref = source["secret"]
        data = _read(api, slot.namespace, "secrets", ref["name"], ref.get("optional", False))
        _write(directory, data, ref.get("items"))
    elif "downwardAPI" in source:
        for item in source["downwardAPI"]["items"]:
            value = _field(slot, item["fieldRef"]["fieldPath"])
            _write(directory, {item["path"]: value.encode()}, None)
    else:
        raise UnsupportedPod(f"projected source {sorted(source)}")


def _request_token(api: ApiClient, slot: PodSlot, token: JsonObject) -> str:
    """A token for the Pod's ServiceAccount, bound to the Pod (what the kubelet asks for)."""
    account = slot.pod["spec"].get("serviceAccountName", "default")
    spec: dict[str, Any] = {
        "expirationSeconds": token.get("expirationSeconds", 3600),
        "boundObjectRef": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": slot.name,
            "uid": slot.pod["metadata"]["uid"],
        },
    }
    if token.get("audience"):
        spec["audiences"] = [token["audience"]]
    answer = api.create(
        f"/api/v1/namespaces/{slot.namespace}/serviceaccounts/{urllib.parse.quote(account)}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
    )
    return str(answer["status"]["token"])


def _read(api: ApiClient, namespace: str, kind: str, name: str, optional: bool) -> dict[str, bytes]:
    """A Secret's or ConfigMap's data as bytes by key ({} when optional and missing)."""
    try:
        found = api.get(f"/api/v1/namespaces/{namespace}/{kind}/{urllib.parse.quote(name)}")
    except ApiError as exc:
        if exc.status == 404 and optional:
            return {}
        raise
    if kind == "secrets":
        return {k: base64.b64decode(v) for k, v in (found.get("data") or {}).items()}
    return {k: v.encode() for k, v in (found.get("data") or {}).items()}


def _write(directory: Path, data: Mapping[str, bytes], items: list[JsonObject] | None) -> None:
    paths = {i["key"]: i["path"] for i in items} if items else {k: k for k in data}
    for key, relative in paths.items():
        if key in data:
            path = directory / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data[key])
            path.chmod(FILE_MODE)
