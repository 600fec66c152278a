"""The chart's recording and alert rules: valid for promtool, and each one unit-tested by it.

``rules_test.yaml`` holds the ``promtool test rules`` cases; this module runs them and checks
that none of the rules goes untested: every alert is seen firing and every recording rule has
its arithmetic checked.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.prometheus.rules import RULES_FILE, alert_names, recording_names, rules

UNIT_TESTS = Path(__file__).with_name("rules_test.yaml")


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not installed (scripts/system-packages installs Debian's prometheus)")
    return found


def run(promtool: str, *args: str) -> str:
    result = subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_rules_pass_promtool_check(promtool: str) -> None:
    out = run(promtool, "check", "rules", str(RULES_FILE))
    assert f"SUCCESS: {len(rules())} rules found" in out


def test_rules_pass_their_promtool_unit_tests(promtool: str) -> None:
    assert "SUCCESS" in run(promtool, "test", "rules", str(UNIT_TESTS))


def test_every_alert_is_seen_firing_and_every_recording_rule_evaluated() -> None:
    cases = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in cases
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    quiet = {
        case["alertname"]
        for test in cases
        for case in test.get("alert_rule_test", [])
        if not case["exp_alerts"]
    }
    evaluated = {
        name
        for test in cases
        for case in test.get("promql_expr_test", [])
        for name in recording_names()
        if case["expr"].startswith(name)
    }
    assert fired == set(alert_names())
    assert quiet | fired == set(alert_names())
    assert evaluated == set(recording_names())
