"""The chart's Prometheus rule file, read by the rule tests and the real-Prometheus test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

RULES_FILE = (
    Path(__file__).resolve().parents[2] / "helm" / "sluice" / "files" / "prometheus" / "rules.yaml"
)


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alert_names() -> list[str]:
    return [rule["alert"] for rule in rules() if "alert" in rule]


def recording_names() -> list[str]:
    """Each recorded series once (a record may have several rules, one per label set)."""
    return sorted({rule["record"] for rule in rules() if "record" in rule})
