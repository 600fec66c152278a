"""The operator's Kubernetes API access (kubernetes_asyncio), in one module.

kopf watches and patches the resources it handles; everything else the operator reads or
writes (policies in bulk, Deployments, Pods, ConfigMaps, Secrets, status) goes through here, so
RBAC needs are visible in one place and match the chart's ClusterRole
(``helm/sluice/files/operator-clusterrole-rules.yaml``).
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

import orjson
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from sluice_operator.crds import GROUP, VERSION

Body = dict[str, Any]  # a raw Kubernetes object, as the API server sends it
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


async def _items(response: Any) -> list[Body]:
    """The items of a raw list answer: plain JSON, skipping the client's slow model classes."""
    async with response:
        if response.status >= 400:
            error = ApiException(status=response.status, reason=response.reason)
            error.body = await response.text()
            raise error
        return orjson.loads(await response.read())["items"]


class StatusConflict(Exception):
    """A guarded status write refused: the object changed since it was read."""


async def _done(call: Any) -> None:
    """Await a write without building the client's model of the answer (slow, unused).

    Without preloading, the client does not raise for error statuses: done here.
    """
    response = await call
    async with response:
        if response.status >= 400:
            error = ApiException(status=response.status, reason=response.reason)
            error.body = await response.text()
            raise error


def _decoded(secret: Any) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.admission = client.AdmissionregistrationV1Api(api)

    @classmethod
    async def connect(cls) -> Kube:
        """In-cluster credentials when running in a pod, else $KUBECONFIG."""
        try:
            config.load_incluster_config()
        except config.ConfigException:
            await config.load_kube_config()
        return cls(client.ApiClient())

    async def close(self) -> None:
        await self.api.close()

    # -- reads -------------------------------------------------------------------------------
    async def policies(self, namespace: str) -> list[Body]:
        answer = await self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, "llmpolicies"
        )
        return answer["items"]

    async def budgets(self, namespace: str) -> list[Body]:
        answer = await self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, "llmbudgets"
        )
        return answer["items"]

    async def patch_budget_status(
        self, namespace: str, name: str, status: Body, *, resource_version: str | None = None
    ) -> None:
        """Merge ``status`` into a budget's; with ``resource_version``, only if the budget is
        still that version (else ``StatusConflict``): spend folded from what was read must not
        overwrite what another replica wrote since."""
        try:
            await self._patch_status("llmbudgets", namespace, name, status, resource_version)
        except ApiException as error:
            if error.status == 409:
                raise StatusConflict(
                    f"llmbudget {namespace}/{name} changed since it was read"
                ) from error
            raise

    async def _secret(self, namespace: str, name: str) -> Any | None:
        """A Secret (the client's model), or None when it does not exist."""
        try:
            return await self.core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def _secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """A Secret's decoded data, or None when it does not exist."""
        secret = await self._secret(namespace, name)
        return None if secret is None else _decoded(secret)

    async def read_admin_token(self, namespace: str, name: str) -> str | None:
        data = await self._secret_data(namespace, name)
        return data["token"].decode() if data is not None else None

    async def deployments(self, namespace: str) -> list[Body]:
        answer = await self.apps.list_namespaced_deployment(namespace, _preload_content=False)
        return await _items(answer)

    async def pods(self, namespace: str, selector: str) -> list[Body]:
        answer = await self.core.list_namespaced_pod(
            namespace, label_selector=selector, _preload_content=False
        )
        return await _items(answer)

    async def config_map(self, namespace: str, name: str) -> Body | None:
        """A ConfigMap as plain JSON, or None when it does not exist."""
        response: Any = await self.core.read_namespaced_config_map(  # raw: the stubs say model
            name, namespace, _preload_content=False
        )
        async with response:
            if response.status == 404:
                return None
            if response.status >= 400:
                error = ApiException(status=response.status, reason=response.reason)
                error.body = await response.text()
                raise error
            body: Body = orjson.loads(await response.read())
            return body

    async def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        """The namespace's labels; None when it is gone or being deleted."""
        try:
            answer = await self.core.read_namespace(namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        if answer.metadata.deletion_timestamp is not None:
            return None
        return answer.metadata.labels or {}

    # -- writes ------------------------------------------------------------------------------
    async def apply_config_map(
        self,
        namespace: str,
        name: str,
        data: dict[str, str],
        labels: dict[str, str],
        annotations: dict[str, str],
        owner_references: list[Body],
    ) -> None:
        """Create or replace it whole, so one stored before it had owners gets them too."""
        metadata = {
            "name": name,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": owner_references,
        }
        body: Any = {  # a plain dict: the client takes it as well as its model
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata,
            "data": data,
        }
        try:
            await _done(
                self.core.replace_namespaced_config_map(
                    name, namespace, body, _preload_content=False
                )
            )
        except ApiException as error:
            if error.status != 404:
                raise
            await _done(
                self.core.create_namespaced_config_map(namespace, body, _preload_content=False)
            )

    async def admin_token(self, namespace: str, name: str) -> str:
        """The sidecars' admin token of a namespace, created on first use."""
        existing = await self.read_admin_token(namespace, name)
        if existing is not None:
            return existing
        token = secrets.token_urlsafe(32)
        body: Any = {  # a plain dict: the client takes it as well as its model
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "sluice"}},
            "type": "Opaque",
            "stringData": {"token": token},
        }
        try:
            await self.core.create_namespaced_secret(namespace, body)
        except ApiException as error:
            if error.status != 409:  # created meanwhile by another handler: use theirs
                raise
            return await self.admin_token(namespace, name)
        return token

    async def tls_secret(self, namespace: str, name: str) -> tuple[dict[str, bytes], str] | None:
        """The webhook certificate's files and the Secret's resourceVersion, or None."""
        secret = await self._secret(namespace, name)
        return None if secret is None else (_decoded(secret), secret.metadata.resource_version)

    async def replace_tls_secret(
        self, namespace: str, name: str, files: dict[str, bytes], resource_version: str
    ) -> bool:
        """Renew it, unless it changed since ``resource_version`` (another replica renewed it
        first: False, read theirs)."""
        body: Any = {  # a plain dict: the client takes it as well as its model
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "resourceVersion": resource_version,
                "labels": {"app.kubernetes.io/managed-by": "sluice"},
            },
            "type": "Opaque",
            "data": {k: base64.b64encode(v).decode() for k, v in files.items()},
        }
        try:
            await self.core.replace_namespaced_secret(name, namespace, body)
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    async def create_tls_secret(self, namespace: str, name: str, files: dict[str, bytes]) -> bool:
        """Create it; False when another replica created it first (then read theirs)."""
        body: Any = {  # a plain dict: the client takes it as well as its model
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "sluice"}},
            "type": "Opaque",
            "data": {k: base64.b64encode(v).decode() for k, v in files.items()},
        }
        try:
            await self.core.create_namespaced_secret(namespace, body)
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    async def set_ca_bundle(self, configuration: str, ca_pem: bytes) -> bool:
        """Put the CA into every webhook of the configuration; False when it does not exist."""
        try:
            current = await self.admission.read_mutating_webhook_configuration(configuration)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        bundle = base64.b64encode(ca_pem).decode()
        patch = [
            {
                "op": "replace" if hook.client_config.ca_bundle else "add",
                "path": f"/webhooks/{index}/clientConfig/caBundle",
                "value": bundle,
            }
            for index, hook in enumerate(current.webhooks or [])
            if hook.client_config.ca_bundle != bundle
        ]
        if patch:
            await self.admission.patch_mutating_webhook_configuration(
                configuration,
                patch,
                _content_type=JSON_PATCH,  # type: ignore[call-arg]  # accepted, not in the stubs
            )
        return True

    async def server_minor(self) -> int:
        info = await client.VersionApi(self.api).get_code()
        return int("".join(ch for ch in info.minor if ch.isdigit()))

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        await _done(
            self.core.patch_namespaced_pod(
                name,
                namespace,
                {"metadata": {"annotations": annotations}},
                _content_type=MERGE_PATCH,  # type: ignore[call-arg]  # accepted, not in the stubs
                _preload_content=False,
            )
        )

    async def create_event(self, namespace: str, event: Body) -> tuple[int, Body]:
        """Create an Event; its status and the body answered (an error is an answer here: the
        Event series decides what a 409 or a 404 means)."""
        plain: Any = event  # a plain dict: the client takes it as well as its model
        call = self.core.create_namespaced_event(namespace, plain, _preload_content=False)
        return await _raw_answer(call)

    async def patch_event(self, namespace: str, name: str, changes: Body) -> tuple[int, Body]:
        """Merge-patch an Event; its status and the body answered (errors are answers)."""
        call = self.core.patch_namespaced_event(
            name,
            namespace,
            changes,
            _content_type=MERGE_PATCH,  # type: ignore[call-arg]  # accepted, not in the stubs
            _preload_content=False,
        )
        return await _raw_answer(call)

    async def patch_policy_status(self, namespace: str, name: str, status: Body) -> None:
        await self._patch_status("llmpolicies", namespace, name, status)

    async def _patch_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        status: Body,
        resource_version: str | None = None,
    ) -> None:
        patch: Body = {"status": status}
        if resource_version is not None:  # a precondition: 409 Conflict when it moved on
            patch["metadata"] = {"resourceVersion": resource_version}
        await _done(
            self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                patch,
                _content_type=MERGE_PATCH,  # type: ignore[call-arg]  # accepted, not in the stubs
                _preload_content=False,
            )
        )

    async def patch_deployment_template(self, namespace: str, name: str, patch: Body) -> None:
        await _done(
            self.apps.patch_namespaced_deployment(
                name,
                namespace,
                patch,
                _content_type=MERGE_PATCH,  # type: ignore[call-arg]  # accepted, not in the stubs
                _preload_content=False,
            )
        )


async def _raw_answer(call: Any) -> tuple[int, Body]:
    """The status and JSON body of a raw client call (errors are answers here, not raised)."""
    try:
        response = await call
    except ApiException as error:
        return error.status or 500, {}
    async with response:
        raw = await response.read()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        body = {}
    return response.status, body if isinstance(body, dict) else {}
