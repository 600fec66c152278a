"""Sluice's Grafana dashboards, generated from code with grafana-foundation-sdk.

``python -m dashboards`` writes them to helm/sluice/files/dashboards/, where the chart ships
them as ConfigMaps for Grafana's dashboard sidecar; ``python -m dashboards --check`` fails when
the committed JSON differs from what the code generates (tests/prometheus/test_dashboards.py
does the same). Every panel query is evaluated against a real Prometheus in
tests/prometheus/test_real_prometheus.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import caching, cost, operator, overview, reliability

OUTPUT = Path(__file__).resolve().parents[1] / "helm" / "sluice" / "files" / "dashboards"
BUILDERS: dict[str, Callable[[], Dashboard]] = {
    "sluice-overview.json": overview.build,
    "sluice-cost.json": cost.build,
    "sluice-reliability.json": reliability.build,
    "sluice-cache-batching.json": caching.build,
    "sluice-operator.json": operator.build,
}

__all__ = ["BUILDERS", "OUTPUT", "render"]


def render() -> dict[str, str]:
    """Each dashboard's file name and JSON text, as committed."""
    return {
        name: json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
        for name, build in BUILDERS.items()
    }
