"""Every sidecar dashboard panel, evaluated by a real Prometheus scraping real sidecars.

Prometheus (Debian's package) scrapes two sidecars every second and evaluates the chart's rule
file; the traffic (tests/prometheus/traffic.py) runs twice, so the counters rise between
scrapes. Then every query of every sidecar panel must return a number, and the alerts the
traffic calls for must be on their way (pending). The operator's panels are evaluated against
the operator on the real control plane (e2e/test_operator_dashboard.py).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.prometheus import traffic
from tests.prometheus.panels import queries, variable_lookups
from tests.prometheus.rules import rules
from tests.prometheus.server import Prometheus, Target, binary, eventually, start_prometheus
from tests.support.sidecar import SidecarHandle, close_test_sidecar, start_test_sidecar
from tests.support.simulator import SimulatedLLM

SIDECAR_DASHBOARDS = {
    "sluice-overview.json",
    "sluice-cost.json",
    "sluice-reliability.json",
    "sluice-cache-batching.json",
}
WORKLOADS = ("studio", "batch")

pytestmark = pytest.mark.skipif(
    binary() is None, reason="prometheus not installed (scripts/system-packages installs it)"
)


@dataclass
class Scene:
    prometheus: Prometheus
    sidecars: dict[str, SidecarHandle]
    primary: SimulatedLLM
    backup: SimulatedLLM
    slow: SimulatedLLM


@pytest.fixture
async def scene(llm_factory, tmp_path: Path) -> AsyncIterator[Scene]:
    primary = await llm_factory(name="primary")
    backup = await llm_factory(name="backup")
    slow = await llm_factory(name="slow", latency_s=0.2)
    sidecars = {
        "studio": await start_test_sidecar(traffic.studio_config(primary, backup)),
        "batch": await start_test_sidecar(traffic.batch_config(slow)),
    }
    targets = [
        Target(
            f"127.0.0.1:{handle.running.admin_port}",
            {"namespace": "tests", "workload": name, "pod": f"{name}-0"},
        )
        for name, handle in sidecars.items()
    ]
    prometheus = await start_prometheus(tmp_path, targets)
    try:
        yield Scene(prometheus, sidecars, primary, backup, slow)
    finally:
        await prometheus.close()
        for handle in sidecars.values():
            await close_test_sidecar(handle)


async def test_every_sidecar_panel_query_returns_data_from_a_real_prometheus(
    scene: Scene,
) -> None:
    prometheus, studio = scene.prometheus, scene.sidecars["studio"]
    started = time.time()
    await traffic.push_external_spend(studio)
    for n in (1, 2):
        await traffic.studio_round(studio, scene.primary, scene.backup, n)
        await traffic.batch_round(scene.sidecars["batch"], scene.slow, n)
        await ingested(scene)

    panel_queries = queries(SIDECAR_DASHBOARDS)
    # Over the traffic's whole period, as a dashboard showing it would (a slow run can leave
    # the one-minute rates empty at its end).
    empty = await prometheus.without_data(
        [q.promql() for q in panel_queries], limit_s=20, since=started
    )
    assert not [(q.dashboard, q.panel, q.promql()) for q in panel_queries if q.promql() in empty]
    assert len(panel_queries) >= 50
    for variable, match, label in variable_lookups(SIDECAR_DASHBOARDS):
        values = await prometheus.api(f"label/{label}/values", **{"match[]": match})
        assert values, (variable, match)

    # The rules loaded, evaluate without error, and the alerts this traffic calls for are
    # pending (each has a `for` longer than the test).
    groups = (await prometheus.api("rules"))["groups"]
    loaded = [rule for group in groups for rule in group["rules"]]
    assert len(loaded) == len(rules())
    assert {rule["health"] for rule in loaded} == {"ok"}, [r for r in loaded if r.get("lastError")]
    alerts = {a["labels"]["alertname"]: a for a in (await prometheus.api("alerts"))["alerts"]}
    assert alerts["LlmBudgetAtAlertThreshold"]["labels"]["budget"] == "tests/near"
    assert alerts["LlmCircuitBreakerOpen"]["labels"]["provider"] == "primary"


async def ingested(scene: Scene) -> None:
    """Wait until Prometheus holds each sidecar's current call count."""
    for workload, handle in scene.sidecars.items():
        count = total(await handle.metrics_text(), "llm_requests_total")
        promql = f'sum(llm_requests_total{{workload="{workload}"}}) == {count}'
        await eventually(lambda promql=promql: scene.prometheus.has_data(promql), limit_s=10)


def total(exposition: str, name: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name
    )
