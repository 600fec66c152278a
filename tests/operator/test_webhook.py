"""The webhook's mutation (webhook.mutate_pod) on the in-memory fake: the admission warnings
``kubectl apply`` shows when a Pod is injected differently from what it asks for."""

from __future__ import annotations

from typing import Any

from sluice_operator.settings import OperatorSettings
from sluice_operator.webhook import mutate_pod
from tests.operator.fake_kube import FakeKube

SETTINGS = OperatorSettings(sidecar_image="sidecar:test")


def pod(annotations: dict[str, str], *containers: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "studio-1", "labels": {"app": "studio"}, "annotations": annotations},
        "spec": {"containers": list(containers) or [{"name": "app", "image": "app"}]},
    }


async def warnings_of(body: dict[str, Any]) -> list[str]:
    warnings: list[str] = []
    injected = await mutate_pod(
        body,
        "team-a",
        FakeKube(),
        SETTINGS,
        35,
        dryrun=True,
        warnings=warnings,  # type: ignore[arg-type]
    )
    assert injected is not None
    return warnings


async def test_a_plain_opted_in_pod_is_injected_without_warnings() -> None:
    assert await warnings_of(pod({})) == []
    # Its own base URL, pointing at the sidecar already: nothing bypasses it.
    url = {"name": "OPENAI_BASE_URL", "value": "http://127.0.0.1:17100/v1"}
    assert await warnings_of(pod({}, {"name": "app", "env": [url]})) == []


async def test_an_unknown_proxy_annotation_is_named_as_ignored() -> None:
    (warning,) = await warnings_of(pod({"sluice.dev/proxy-memory-limt": "1Gi"}))
    assert "sluice.dev/proxy-memory-limt" in warning and "ignored" in warning
    assert "sluice.dev/proxy-memory-limit" in warning  # what it may have meant


async def test_an_unknown_base_url_mode_is_named_and_the_urls_still_set() -> None:
    (warning,) = await warnings_of(pod({"sluice.dev/inject-base-urls": "except-envfrom"}))
    assert "'except-envfrom'" in warning and "except-env-from" in warning


async def test_base_urls_over_env_from_and_an_apps_own_base_url_are_named() -> None:
    env_from = {"name": "worker", "envFrom": [{"secretRef": {"name": "keys"}}]}
    own = {"name": "app", "env": [{"name": "ANTHROPIC_BASE_URL", "value": "https://x"}]}
    own_url, over_env_from = await warnings_of(pod({}, own, env_from))
    assert "container 'app'" in own_url and "ANTHROPIC_BASE_URL" in own_url
    assert "bypass" in own_url
    assert "container 'worker'" in over_env_from and "envFrom" in over_env_from
    assert "except-env-from" in over_env_from
    left = await warnings_of(pod({"sluice.dev/inject-base-urls": "except-env-from"}, env_from))
    assert len(left) == 1 and "'worker'" in left[0] and "its envFrom" in left[0]
