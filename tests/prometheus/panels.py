"""The committed dashboards' panels and queries, as the Prometheus tests evaluate them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from dashboards import OUTPUT

# What Grafana puts in place of its variables when "All" is chosen and the range is short.
SUBSTITUTIONS = {
    "$namespace": ".*",
    "$workload": ".*",
    "$provider": ".*",
    "$model": ".*",
    "$__rate_interval": "1m",
    "$__range": "5m",
}


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    expr: str

    def promql(self) -> str:
        text = self.expr
        for name, value in SUBSTITUTIONS.items():
            text = text.replace(name, value)
        return text


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(OUTPUT.glob("*.json"))}


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in board.get("panels", []):
        if panel.get("type") == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def queries(names: set[str] | None = None) -> list[Query]:
    return [
        Query(name, panel["title"], target["expr"])
        for name, board in dashboards().items()
        if names is None or name in names
        for panel in panels(board)
        for target in panel.get("targets", [])
    ]


LABEL_VALUES = re.compile(r"label_values\((?P<match>.+), (?P<label>\w+)\)")


def variable_lookups(names: set[str]) -> list[tuple[str, str, str]]:
    """(variable, series match, label) of each label_values(...) variable."""
    found = []
    for name, board in dashboards().items():
        if name not in names:
            continue
        for variable in board["templating"]["list"]:
            query = variable.get("query")
            if isinstance(query, str) and (m := LABEL_VALUES.fullmatch(query)):
                match = Query(name, variable["name"], m["match"]).promql()
                found.append((variable["name"], match, m["label"]))
    return found
