"""The operator's metrics: what each recording site counts, and the served ``/metrics``.

Pushes and usage collections go to a real sidecar on loopback (and to a closed port), and the
exposition is read back over HTTP and parsed as Prometheus parses it.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sluice_operator import certificates
from sluice_operator.metrics import OperatorMetrics, start_metrics_server
from sluice_operator.pusher import Pusher, PushTarget
from sluice_operator.settings import OperatorSettings
from tests.support.sidecar import (
    ADMIN_TOKEN,
    SidecarHandle,
    close_test_sidecar,
    compile_policy,
    policy,
    start_test_sidecar,
)

SETTINGS = OperatorSettings(push_attempts=2, push_backoff_s=0.01, push_timeout_s=2)


def sample(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


@pytest.fixture
async def sidecar() -> AsyncIterator[SidecarHandle]:
    handle = await start_test_sidecar()
    yield handle
    await close_test_sidecar(handle)


@pytest.fixture
async def pusher() -> AsyncIterator[Pusher]:
    pusher = Pusher(SETTINGS, OperatorMetrics())
    await pusher.start()
    yield pusher
    await pusher.close()


def target(handle: SidecarHandle) -> PushTarget:
    return PushTarget("pod-a", "127.0.0.1", handle.running.admin_port)


def closed_port_target() -> PushTarget:
    return PushTarget("pod-gone", "127.0.0.1", 1)


async def test_pushes_are_counted_by_result_with_their_duration(
    sidecar: SidecarHandle, pusher: Pusher
) -> None:
    config = compile_policy(policy(providers=[{"name": "openai", "type": "openai"}]))
    good = json.dumps(config.model_dump(mode="json", by_alias=True)).encode()
    results = await pusher.push_all([target(sidecar)], good, ADMIN_TOKEN)
    assert results[0].ok
    await pusher.push_all([target(sidecar)], b'{"not": "a config"}', ADMIN_TOKEN)
    await pusher.push_all([closed_port_target()], good, ADMIN_TOKEN)
    metrics = pusher.metrics
    assert sample(metrics, "sluice_operator_pushes_total", result="ok") == 1
    assert sample(metrics, "sluice_operator_pushes_total", result="refused") == 1
    assert sample(metrics, "sluice_operator_pushes_total", result="failed") == 1
    assert sample(metrics, "sluice_operator_push_duration_seconds_count") == 3


async def test_usage_collections_are_counted_by_result(
    sidecar: SidecarHandle, pusher: Pusher
) -> None:
    assert isinstance(await pusher.collect_usage(target(sidecar), ADMIN_TOKEN), dict)
    assert await pusher.collect_usage(target(sidecar), "wrong-token") is None
    assert await pusher.collect_usage(closed_port_target(), ADMIN_TOKEN) is None
    metrics = pusher.metrics
    assert sample(metrics, "sluice_operator_usage_collections_total", result="ok") == 1
    assert sample(metrics, "sluice_operator_usage_collections_total", result="error") == 2


def test_reconciles_count_results_and_time_only_the_runs_that_did_work() -> None:
    metrics = OperatorMetrics()
    with metrics.reconcile("LlmPolicy"):
        pass
    with metrics.reconcile("Pod") as outcome:
        outcome.coalesced = True
    with pytest.raises(RuntimeError), metrics.reconcile("Deployment"):
        raise RuntimeError("API server gone")
    assert sample(metrics, "sluice_operator_reconciles_total", kind="LlmPolicy", result="success")
    assert sample(metrics, "sluice_operator_reconciles_total", kind="Pod", result="coalesced")
    assert sample(metrics, "sluice_operator_reconciles_total", kind="Deployment", result="error")
    assert (
        sample(metrics, "sluice_operator_reconcile_duration_seconds_count", kind="LlmPolicy") == 1
    )
    assert sample(metrics, "sluice_operator_reconcile_duration_seconds_count", kind="Pod") is None


def test_admissions_count_injected_skipped_and_failed_and_time_each() -> None:
    metrics = OperatorMetrics()
    with metrics.admission() as outcome:
        outcome.injected = True
    with metrics.admission():
        pass
    with pytest.raises(KeyError), metrics.admission():
        raise KeyError("spec")
    for result in ("injected", "skipped", "error"):
        assert sample(metrics, "sluice_operator_admissions_total", result=result) == 1
    assert sample(metrics, "sluice_operator_admission_duration_seconds_count") == 3


def test_sidecar_gauges_follow_the_policies_that_exist() -> None:
    metrics = OperatorMetrics()
    metrics.set_sidecars("team-a", "desired", {"studio": 3, "batch": 1})
    metrics.set_sidecars("team-b", "desired", {"studio": 2})
    metrics.set_sidecars("team-a", "missing", {"studio": 1})
    metrics.set_sidecars("team-a", "desired", {"studio": 2})  # batch deleted
    labels = {"namespace": "team-a", "policy": "studio"}
    assert sample(metrics, "sluice_operator_sidecars", **labels, state="desired") == 2
    assert sample(metrics, "sluice_operator_sidecars", **labels, state="missing") == 1
    gone = {"namespace": "team-a", "policy": "batch", "state": "desired"}
    assert sample(metrics, "sluice_operator_sidecars", **gone) is None
    other = {"namespace": "team-b", "policy": "studio", "state": "desired"}
    assert sample(metrics, "sluice_operator_sidecars", **other) == 2


def test_certificate_expiry_is_the_serving_certificates_not_after() -> None:
    made = certificates.generate("sluice-operator", "sluice-system", [])
    metrics = OperatorMetrics()
    metrics.set_certificate_expiry(certificates.expiry_timestamp(made.cert_pem))
    expiry = sample(metrics, "sluice_operator_certificate_expiry_timestamp_seconds")
    assert expiry is not None
    remaining = expiry - datetime.datetime.now(datetime.UTC).timestamp()
    assert (
        certificates.VALIDITY.total_seconds() - 60
        < remaining
        <= (certificates.VALIDITY.total_seconds())
    )


async def test_metrics_endpoint_serves_every_agreed_name() -> None:
    metrics = OperatorMetrics()
    metrics.set_sidecars("team-a", "synced", {"studio": 3})
    runner = await start_metrics_server(metrics, "127.0.0.1", 0)
    port = runner.addresses[0][1]
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/metrics") as answer,
        ):
            assert answer.status == 200
            assert answer.content_type == "text/plain"
            text = await answer.text()
    finally:
        await runner.cleanup()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {
        "sluice_operator_reconciles",
        "sluice_operator_reconcile_duration_seconds",
        "sluice_operator_pushes",
        "sluice_operator_push_duration_seconds",
        "sluice_operator_sidecars",
        "sluice_operator_usage_collections",
        "sluice_operator_admissions",
        "sluice_operator_admission_duration_seconds",
        "sluice_operator_certificate_expiry_timestamp_seconds",
        "sluice_operator_events_ignored",
    } <= set(families)
    assert families["sluice_operator_pushes"].type == "counter"
    (synced,) = families["sluice_operator_sidecars"].samples
    assert synced.labels == {"namespace": "team-a", "policy": "studio", "state": "synced"}
    assert synced.value == 3
