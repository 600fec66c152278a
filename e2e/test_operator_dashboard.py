"""Every Operator dashboard panel, evaluated by a real Prometheus scraping the real operator.

The operator runs against the real control plane; a real Prometheus scrapes its /metrics every
second, with honor_labels as the chart's ServiceMonitor does, while the scenario of
e2e/test_operator_metrics.py (a two-pod rollout, a policy, a budget) gives it work. Then every
query of every Operator panel must return a number.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from e2e import test_operator_metrics
from e2e.harness.controlplane import ControlPlane
from e2e.harness.kubelet import IpAllocator
from e2e.operator_replicas import Replica
from e2e.test_operator_metrics import cluster
from tests.prometheus.panels import queries, variable_lookups
from tests.prometheus.server import Target, binary, eventually, start_prometheus

__all__ = ["cluster"]
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(binary() is None, reason="prometheus not installed (system-packages)"),
]
OPERATOR = {"sluice-operator.json"}


async def test_every_operator_panel_query_returns_data_from_a_real_prometheus(
    cluster: tuple[ControlPlane, Replica], loopback_ips: IpAllocator, tmp_path: Path
) -> None:
    _, replica = cluster
    target = Target(f"127.0.0.1:{replica.metrics_port}", {"namespace": "sluice-system"})
    prometheus = await start_prometheus(
        tmp_path / "prometheus", [target], job="sluice-operator", honor_labels=True
    )
    try:
        # Scraped once before the work starts, so the rollout's admissions are an increase.
        await eventually(lambda: prometheus.has_data("up == 1"), limit_s=10)
        started = time.time()
        await asyncio.to_thread(
            test_operator_metrics.test_operator_metrics_follow_a_rollout_a_policy_and_a_budget,
            cluster,
            loopback_ips,
            tmp_path,
        )
        panel_queries = queries(OPERATOR)
        # Over the scenario's whole period, as a dashboard showing it would: the panels are
        # rates over one minute, so evaluated only at the end of a slow run (one that took
        # longer than that) they would be empty, as for an idle operator.
        empty = await prometheus.without_data(
            [q.promql() for q in panel_queries], limit_s=30, since=started
        )
        assert not [(q.panel, q.promql()) for q in panel_queries if q.promql() in empty]
        for variable, match, label in variable_lookups(OPERATOR):
            values = await prometheus.api(f"label/{label}/values", **{"match[]": match})
            assert test_operator_metrics.NAMESPACE in values, (variable, match)
    finally:
        await prometheus.close()
