"""The import-linter contracts of pyproject.toml cover the code as it is, not as it was.

``lint-imports`` (scripts/test) only checks the modules a contract lists: a new stage missing
from the independence contract, or a new top-level package missing from the layers, would be
checked by nothing. These tests fail first.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIDECAR = ROOT / "sidecar" / "sluice_sidecar"
CONTRACTS: list[dict[str, Any]] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
    "importlinter"
]["contracts"]
# The pipeline's modules that are not stages: the call they share, their composition, the runtime.
NOT_STAGES = {"__init__", "call", "compose", "runtime"}


def contract(kind: str) -> dict[str, Any]:
    (found,) = [c for c in CONTRACTS if c["type"] == kind]
    return found


def test_every_stage_is_in_the_independence_contract() -> None:
    stages = {f"sluice_sidecar.pipeline.{p.stem}" for p in (SIDECAR / "pipeline").glob("*.py")}
    stages -= {f"sluice_sidecar.pipeline.{name}" for name in NOT_STAGES}
    assert set(contract("independence")["modules"]) == stages


def test_every_top_level_package_is_a_layer() -> None:
    layers = {
        name.strip()
        for layer in contract("layers")["layers"]
        for name in layer.replace(":", "|").split("|")
    }
    top = {
        f"sluice_sidecar.{p.stem}"
        for p in SIDECAR.iterdir()
        if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"
    }
    assert layers == top - {"sluice_sidecar.__init__", "sluice_sidecar.__main__"}
