"""The benches' second interpreter (``--python``): the packages pinned for its venv, the
interpreter used as is when it already holds them, and the ratios its targets get."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
MODULES = ("interpreters", "proxy_overhead", "streaming", "overhead_targets", "overhead_wrk")


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, ModuleType]]:
    monkeypatch.syspath_prepend(str(BENCH))  # the scripts import their siblings by name
    yield {name: importlib.import_module(name) for name in MODULES[:3]}
    for name in MODULES:
        sys.modules.pop(name, None)


def test_pins_hold_the_dependency_closure_at_this_venvs_versions(bench) -> None:
    pins = bench["interpreters"].pins()
    # Direct dependencies, what they pull in, and the bench extra the relay imports (where
    # this venv has it: the tests' venv has not).
    for name in ("aiohttp", "uvloop", "multidict", "pydantic-core"):
        assert pins[name] == importlib.metadata.version(name)
    for name in bench["interpreters"].EXTRA_REQUIREMENTS:
        assert pins.get(name) == (
            importlib.metadata.version(name) if bench["interpreters"].installed(name) else None
        )
    assert "pytest" not in pins and "kopf" not in pins  # neither test nor operator extras


def test_an_interpreter_holding_every_pin_is_used_as_is(bench, monkeypatch, tmp_path) -> None:
    interpreters = bench["interpreters"]
    monkeypatch.setattr(interpreters, "VENVS", tmp_path / "venvs")
    said: list[str] = []
    other = interpreters.prepare(Path(sys.executable), None, said.append)
    assert other.python == Path(sys.executable)
    assert other.label == "py" + sys.version.split()[0]
    assert not said and not (tmp_path / "venvs").exists()  # no venv made, nothing installed
    assert other.facts["packages"] == interpreters.pins()


def test_overhead_ratios_of_the_other_interpreters_targets(bench) -> None:
    overhead = bench["proxy_overhead"]
    rows = [
        {"target": target, "connections": 32, "rps": rps, "cpu_us_per_req": cpu, "p50_ms": 1.0}
        | {"added_p50_ms": None, "added_p99_ms": None}
        for target, rps, cpu in [
            ("sidecar", 1000, 800),
            ("aiohttp-uvloop", 2000, 300),
            ("sidecar@deb", 1250, 600),
            ("aiohttp-uvloop@deb", 2400, 240),
            ("litellm", 50, 20000),
        ]
    ]
    found = overhead.ratios(rows, 32, 32, "deb")
    assert found["sidecar@deb_vs_aiohttp_uvloop@deb_cpu_per_request"] == 2.5
    assert found["sidecar@deb_vs_sidecar_cpu_per_request"] == 0.75
    assert found["aiohttp_uvloop@deb_vs_aiohttp_uvloop_cpu_per_request"] == 0.8
    assert found["sidecar@deb_vs_litellm_rps_32c"] == 25
    assert "sidecar@deb_vs_sidecar_cpu_per_request" not in overhead.ratios(rows, 32, 32)


def test_stream_ratios_set_each_target_against_its_own_interpreters_relay(bench) -> None:
    streaming = bench["streaming"]
    rows = [
        {"scenario": "s", "target": target, "cpu_us_per_chunk": cpu}
        for target, cpu in [
            ("relay-uvloop", 60.0),
            ("sidecar-uvloop", 90.0),
            ("relay-uvloop@deb", 50.0),
            ("sidecar-uvloop@deb", 70.0),
        ]
    ]
    found = streaming.ratios(rows)
    assert found == {
        "sidecar-uvloop/relay cpu per chunk, s": 1.5,
        "relay-uvloop@deb/default python cpu per chunk, s": 0.83,
        "sidecar-uvloop@deb/relay cpu per chunk, s": 1.4,
        "sidecar-uvloop@deb/default python cpu per chunk, s": 0.78,
    }
