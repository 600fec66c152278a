"""Label selector semantics (unit)."""

from __future__ import annotations

import pytest

from sluice_operator.selection import selector_matches

LABELS = {"app": "studio", "tier": "web"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        (None, True),
        ({}, True),
        ({"matchLabels": {"app": "studio"}}, True),
        ({"matchLabels": {"app": "other"}}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]}, False),
        ({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, True),
        (
            {
                "matchLabels": {"app": "studio"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["api"]}],
            },
            False,
        ),
    ],
)
def test_selector(selector: dict | None, matches: bool) -> None:
    assert selector_matches(selector, LABELS) is matches
