"""The boundary's checks (``sluice_sidecar.api.boundary``) as functions (unit).

Their CPU cost next to parsing is a figure, not a test: bench/boundary_cost.py.
"""

from __future__ import annotations

import pytest

from sluice_sidecar.api.boundary import MAX_JSON_DEPTH, nesting_depth, parse_body
from sluice_sidecar.errors import LimitExceeded


@pytest.mark.parametrize(
    ("value", "depth"),
    [({}, 1), ([], 1), ({"a": [1, {"b": []}]}, 4), ("x", 0), ([[[[]]], []], 4)],
)
def test_nesting_depth_counts_arrays_and_objects(value: object, depth: int) -> None:
    assert nesting_depth(value) == depth


def test_parse_body_refuses_one_level_past_the_limit() -> None:
    def body(levels: int) -> bytes:
        return b'{"model": "m", "x": ' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"

    assert parse_body(body(MAX_JSON_DEPTH))["model"] == "m"
    with pytest.raises(LimitExceeded) as caught:
        parse_body(body(MAX_JSON_DEPTH + 1))
    assert caught.value.limit == "json_depth" and caught.value.status == 400
