"""Each package's third-party imports are declared where its image installs them from.

The operator image installs ``.[operator]`` and the sidecar image ``.``: a module importing a
distribution that only the ``test`` extra brings works in the venv and fails in the image.
This reads the imports of every module statically, so it runs without building an image
(``tests/images/test_images.py`` then imports everything inside the built images).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    # package directory: the extras its image installs
    "sidecar/sluice_sidecar": (),
    "operator/sluice_operator": ("operator",),
}
FIRST_PARTY = {"sluice_sidecar", "sluice_operator"}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(extras: tuple[str, ...]) -> set[str]:
    """Distribution names the project's dependencies plus ``extras`` require."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    return {normalized(re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0]) for r in requirements}


def imported_top_levels(package: Path) -> set[str]:
    """Top-level names of every absolute import in the package's modules."""
    names: set[str] = set()
    for module in package.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(), str(module))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - FIRST_PARTY - {"__future__"}


@pytest.mark.parametrize(("package", "extras"), PACKAGES.items())
def test_every_third_party_import_is_declared_for_the_image(
    package: str, extras: tuple[str, ...]
) -> None:
    providers = importlib.metadata.packages_distributions()
    allowed = declared(extras)
    undeclared = {
        name: sorted({normalized(d) for d in providers.get(name, [name])})
        for name in imported_top_levels(ROOT / package)
        if not {normalized(d) for d in providers.get(name, [name])} & allowed
    }
    assert not undeclared, (
        f"{package} imports {undeclared} (module: distributions), which pyproject.toml's "
        f"dependencies{' + ' + ', '.join(extras) if extras else ''} do not declare"
    )
