"""A price file mounted from a ConfigMap, updated as the kubelet updates it: a new timestamped
folder, then the ``..data`` link swapped in one rename (unit, on virtual time)."""

from __future__ import annotations

import json
from pathlib import Path

from sluice_sidecar.economics.price_file import RECHECK_S, PriceFileWatch
from tests.support.sidecar import VirtualClock


def publish(volume: Path, generation: int, as_of: str) -> None:
    """What the kubelet's atomic writer does for a ConfigMap volume with one key."""
    folder = volume / f"..2026_12_01_10_00_0{generation}.000000001"
    folder.mkdir()
    table = {"asOf": as_of, "models": {"house-model": {"inputPer1M": generation, "outputPer1M": 1}}}
    (folder / "prices.yaml").write_text(json.dumps(table))
    (volume / "..data_tmp").symlink_to(folder.name)
    (volume / "..data_tmp").replace(volume / "..data")
    if not (volume / "prices.yaml").is_symlink():
        (volume / "prices.yaml").symlink_to("..data/prices.yaml")


def test_a_swapped_configmap_reaches_the_date_without_a_priced_call(tmp_path: Path) -> None:
    publish(tmp_path, 1, "2026-11-15")
    clock = VirtualClock()
    watch = PriceFileWatch(str(tmp_path / "prices.yaml"), clock=clock)
    assert watch.current.as_of == "2026-11-15"
    publish(tmp_path, 2, "2026-12-01")
    assert watch.current.as_of == "2026-11-15"  # checked at most every RECHECK_S
    clock.advance(RECHECK_S)
    assert watch.current.as_of == "2026-12-01"
    assert watch.current.prices["house-model"][0] == 2
    # The price table is told once that the prices changed (it clears what it memoised).
    assert watch.refresh() is True
    assert watch.refresh() is False


def test_a_refresh_reads_a_swap_at_once(tmp_path: Path) -> None:
    publish(tmp_path, 1, "2026-11-15")
    watch = PriceFileWatch(str(tmp_path / "prices.yaml"), clock=VirtualClock())
    publish(tmp_path, 2, "2026-12-01")
    assert watch.refresh() is True and watch.current.as_of == "2026-12-01"
    assert watch.refresh() is False
