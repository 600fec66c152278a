"""docs/architecture.md names every module of both packages, and no module that is gone.

Each package's section has a table row per module, named by its path in backticks
(``api/proxy.py``); a module added without its row, or a row left behind by a module that moved,
fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text()
SIDECAR = DOC[DOC.index("## The sidecar as built") : DOC.index("## The operator as built")]
OPERATOR = DOC[DOC.index("## The operator as built") :]
CELL = re.compile(r"^`([a-z_][a-z_/]*\.py)`$")

PACKAGES = [
    ("sidecar", ROOT / "sidecar" / "sluice_sidecar", SIDECAR),
    ("operator", ROOT / "operator" / "sluice_operator", OPERATOR),
]


def in_tables(section: str) -> set[str]:
    """The modules a table row names in a cell of its own (the module column)."""
    cells = (
        cell.strip()
        for line in section.splitlines()
        if line.startswith("|")
        for cell in line.split("|")
    )
    return {match[1] for cell in cells if (match := CELL.match(cell))}


def modules(package: Path) -> set[str]:
    return {
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if path.name != "__init__.py"
    }


@pytest.mark.parametrize(("name", "package", "section"), PACKAGES, ids=[p[0] for p in PACKAGES])
def test_every_module_is_named_in_its_section(name: str, package: Path, section: str) -> None:
    missing = sorted(modules(package) - in_tables(section))
    assert not missing, f"docs/architecture.md does not name these {name} modules: {missing}"


@pytest.mark.parametrize(("name", "package", "section"), PACKAGES, ids=[p[0] for p in PACKAGES])
def test_every_module_named_exists(name: str, package: Path, section: str) -> None:
    gone = sorted(in_tables(section) - modules(package))
    assert not gone, f"docs/architecture.md names {name} modules that do not exist: {gone}"
