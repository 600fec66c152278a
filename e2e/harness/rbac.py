"""Least-privilege credentials for tests: a ServiceAccount bound to one ClusterRole (an
existing one, or one made from given rules), with a kubeconfig holding a TokenRequest
token for it. The operator under test should run with such a kubeconfig, so that its RBAC
rules are tested too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from e2e.harness import processes
from e2e.harness.client import ApiClient, ApiError, JsonObject
from e2e.harness.kubeconfig import write_kubeconfig

TOKEN_SECONDS = 6 * 3600

# What the service_account_kubeconfig fixture returns: keyword arguments as in
# service_account_kubeconfig() below, minus the connection ones; returns the kubeconfig path.
ServiceAccountFactory = Callable[..., Path]


def _create(api: ApiClient, path: str, body: JsonObject) -> None:
    """Create, or replace the rules/subjects if it already exists (re-runs in a session)."""
    try:
        api.create(path, body)
    except ApiError as exc:
        if exc.status != 409:
            raise
        name = body["metadata"]["name"]
        current = api.get(f"{path}/{name}")
        version = current["metadata"]["resourceVersion"]
        body = {**body, "metadata": {**body["metadata"], "resourceVersion": version}}
        api.replace(f"{path}/{name}", body)


def ensure_namespace(api: ApiClient, namespace: str) -> None:
    """Create ``namespace`` if it does not exist."""
    try:
        api.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
    except ApiError as exc:
        if exc.status != 409:
            raise


def service_account_kubeconfig(
    api: ApiClient,
    server: str,
    ca_file: Path,
    directory: Path,
    name: str,
    namespace: str = "default",
    cluster_role: str | None = None,
    rules: Sequence[JsonObject] | None = None,
    bind_in_namespace: str | None = None,
) -> Path:
    """Create ServiceAccount ``namespace/name``, bind it to ``cluster_role`` (or to a new
    ClusterRole ``name`` holding ``rules``) cluster-wide, or only inside
    ``bind_in_namespace`` via a RoleBinding; return the path of a kubeconfig for it.

    Returns once the API server's authorizer has seen the binding.
    """
    if (cluster_role is None) == (rules is None):
        raise ValueError("give exactly one of cluster_role or rules")
    ensure_namespace(api, namespace)
    _create(
        api,
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"metadata": {"name": name, "namespace": namespace}},
    )
    if rules is not None:
        cluster_role = f"{namespace}-{name}"
        _create(
            api,
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            {"metadata": {"name": cluster_role}, "rules": list(rules)},
        )
    assert cluster_role is not None
    binding: JsonObject = {
        "metadata": {"name": f"{namespace}-{name}"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": cluster_role,
        },
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }
    if bind_in_namespace:
        binding["metadata"]["namespace"] = bind_in_namespace
        ensure_namespace(api, bind_in_namespace)
        _create(
            api,
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{bind_in_namespace}/rolebindings",
            binding,
        )
    else:
        _create(api, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding)
    token = api.create(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        {"spec": {"expirationSeconds": TOKEN_SECONDS}},
    )["status"]["token"]
    _wait_effective(api, namespace, name, cluster_role, bind_in_namespace)
    return write_kubeconfig(
        directory / f"sa-{namespace}-{name}.kubeconfig", server, ca_file, token, name, namespace
    )


def _wait_effective(
    api: ApiClient, namespace: str, name: str, cluster_role: str, scope: str | None
) -> None:
    """Poll SubjectAccessReview for the role's first rule until the authorizer allows it."""
    rules: list[JsonObject] = (
        api.get(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{cluster_role}").get("rules")
        or []
    )
    rule = next((r for r in rules if r.get("resources") and r.get("verbs")), None)
    if rule is None:
        return
    attrs: dict[str, Any] = {
        "verb": rule["verbs"][0] if rule["verbs"][0] != "*" else "get",
        "group": (rule.get("apiGroups") or [""])[0].replace("*", ""),
        "resource": rule["resources"][0].replace("*", "pods").split("/")[0],
    }
    if scope:
        attrs["namespace"] = scope
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{namespace}:{name}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
            "resourceAttributes": attrs,
        },
    }

    def allowed() -> bool:
        path = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
        return bool(api.create(path, review)["status"].get("allowed"))

    processes.wait_until(allowed, 30, what=f"RBAC for {namespace}/{name} to take effect")
