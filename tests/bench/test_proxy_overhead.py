"""The benchmark's arithmetic: wrk's line parsed, rounds reduced to medians, ratios, the table.

The benchmark itself needs wrk and nginx and runs for minutes, so CI only checks that what it
computes from the figures stays right.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, ModuleType]]:
    monkeypatch.syspath_prepend(str(BENCH))  # the scripts import their siblings by name
    yield importlib.import_module("proxy_overhead"), importlib.import_module("overhead_wrk")
    for name in ("proxy_overhead", "overhead_wrk", "overhead_targets"):
        sys.modules.pop(name, None)


def run(target: str, connections: int, rps: float, p50: float, cpu: float) -> dict:
    return {
        "target": target,
        "connections": connections,
        "rps": rps,
        "p50_ms": p50,
        "p90_ms": p50 * 2,
        "p99_ms": p50 * 3,
        "cpu_us_per_req": cpu,
        "requests": int(rps * 5),
        "errors": 0,
    }


def test_wrk_line_is_parsed(bench, tmp_path: Path) -> None:
    _, wrk = bench
    output = (
        "Running 5s test\nSLUICE_WRK requests=5000 duration_us=5000000 p50_us=300 p90_us=450 "
        "p99_us=900 mean_us=320 max_us=4000 status_errors=2 socket_errors=1\n"
    )
    result = wrk.parse(output)
    assert result.rps == 1000
    assert (result.p50_us, result.p99_us) == (300, 900)
    assert (result.status_errors, result.socket_errors) == (2, 1)
    script = wrk.write_script(tmp_path).read_text()
    assert '"model": "gpt-4o-mini"' in script and "Bearer test" in script
    with pytest.raises(RuntimeError, match="no SLUICE_WRK line"):
        wrk.parse("unable to connect")


def test_medians_overheads_ratios_and_table(bench) -> None:
    overhead, _ = bench
    runs = [
        run("direct", 1, 2000, 0.30, 200),
        run("direct", 1, 2200, 0.28, 190),
        run("direct", 1, 9999, 0.29, 180),
        run("direct", 32, 5000, 6.0, 180),
        run("nginx", 1, 1800, 0.40, 100),
        run("nginx", 32, 4500, 7.0, 60),
        run("sidecar", 1, 900, 0.80, 700),
        run("sidecar", 32, 1250, 25.0, 600),
        run("litellm", 32, 50, 600.0, 20000),
    ]
    rows = overhead.summarize(runs)
    direct_1c = rows[0]
    assert (direct_1c["rps"], direct_1c["p50_ms"], direct_1c["rounds"]) == (2200, 0.29, 3)
    overhead.add_overheads(rows)
    sidecar_1c = next(r for r in rows if r["target"] == "sidecar" and r["connections"] == 1)
    assert sidecar_1c["added_p50_ms"] == pytest.approx(0.51)
    found = overhead.ratios(rows, 1, 32)
    assert found["sidecar_vs_direct_rps_32c"] == 0.25
    assert found["sidecar_vs_litellm_rps_32c"] == 25
    assert found["sidecar_vs_nginx_added_p50_1c"] == pytest.approx(0.51 / 0.11, rel=1e-2)
    assert found["sidecar_vs_nginx_cpu_per_request"] == 10
    table = overhead.render(
        {"results": rows, "ratios": found, "servers": {}, "skipped": {"x": "why"}}
    )
    assert "| sidecar | 32 | 1250 | 25.00 | 75.00 | +19.00 | +57.00 | 600 | 0 |" in table
    assert "- x: not measured (why)" in table
