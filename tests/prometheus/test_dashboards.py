"""The dashboards: generated from code, committed as generated, and filterable alike."""

from __future__ import annotations

import pytest

from dashboards import BUILDERS, OUTPUT, render
from tests.prometheus.panels import dashboards, panels

SIDECAR_VARIABLES = ["datasource", "namespace", "workload", "provider", "model"]


def test_committed_dashboards_are_what_the_code_generates() -> None:
    committed = {path.name: path.read_text() for path in OUTPUT.glob("*.json")}
    assert committed == render(), "helm/sluice/files/dashboards is stale: run python -m dashboards"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_panel_queries_prometheus_through_the_variables(name: str) -> None:
    board = dashboards()[name]
    variables = [v["name"] for v in board["templating"]["list"]]
    operator = name == "sluice-operator.json"
    assert variables == (["datasource", "namespace"] if operator else SIDECAR_VARIABLES)
    assert len({board["uid"] for board in dashboards().values()}) == len(BUILDERS)
    for panel in panels(board):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        targets = panel["targets"]
        assert targets and len({t["refId"] for t in targets}) == len(targets), panel["title"]
        for target in targets:
            # The sidecar's series are all per workload; the operator's namespace-scoped ones.
            if not operator:
                assert "$namespace" in target["expr"], (panel["title"], target["expr"])
