"""Another Python interpreter for the benches' proxies: a venv of it holding the sidecar's
dependencies at the versions of the project's venv, made on first use.

``proxy_overhead.py --python`` and ``streaming.py --python`` run the bare relay and the sidecar
under that interpreter beside the default ones, so two interpreters (e.g. pyenv's plain build
and Debian's optimised one, the images' ``python3``) are measured in the same rounds. Only the
interpreter differs: the packages are pinned to what the running venv holds, the dependency
closure included, and the sidecar's sources are the tree's own (``PYTHONPATH``).

    .venv/bin/python bench/interpreters.py /usr/bin/python3   # makes the venv, prints its python

(``SLUICE_BENCH_PYTHON`` set to what it prints makes ``instructions.py`` count that python's.)
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import overhead_targets as targets
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

VENVS = targets.CACHE / "python-venvs"
# What the proxies import beyond the sidecar's own dependencies (the bench extra):
# passthrough_proxy.py imports pyreqwest whichever client it relays through, and --profile
# runs the sidecar under pyinstrument.
EXTRA_REQUIREMENTS = ["pyreqwest", "pyinstrument"]

# Run by the interpreter described: what it is, how it was built, which versions it holds.
PROBE = """\
import importlib.metadata as m, json, platform, subprocess, sys, sysconfig
names = json.loads(sys.argv[1])
base = getattr(sys, "_base_executable", sys.executable)
try:
    libs = subprocess.run(["ldd", base], capture_output=True, text=True, timeout=30).stdout
except OSError:
    libs = ""
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return None
print(json.dumps({
    "version": platform.python_version(),
    "implementation": platform.python_implementation(),
    "executable": sys.executable,
    "base_executable": base,
    "config_args": sysconfig.get_config_var("CONFIG_ARGS"),
    "libpython_shared": "libpython" in libs,
    "packages": {name: version(name) for name in names},
}))
"""


@dataclasses.dataclass(frozen=True)
class Interpreter:
    """An interpreter ready to run the proxies: ``python`` holds every pinned package."""

    python: Path
    label: str  # the suffix of its targets' names, e.g. "py3.11.2"
    facts: dict[str, Any]  # what PROBE printed: version, build, base executable, packages


def pins() -> dict[str, str]:
    """The sidecar's dependencies and everything they pull in, at this venv's versions."""
    project = tomllib.loads((targets.REPO / "pyproject.toml").read_text())["project"]
    # The bench extra only where this venv has it (the tests' venv has not).
    extras = [name for name in EXTRA_REQUIREMENTS if installed(name)]
    pending = [Requirement(text) for text in [*project["dependencies"], *extras]]
    found: dict[str, str] = {}
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        found[name] = importlib.metadata.version(name)
        for text in importlib.metadata.requires(name) or []:
            sub = Requirement(text)
            if sub.marker is None or sub.marker.evaluate({"extra": ""}):
                pending.append(sub)
    return dict(sorted(found.items()))


def installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def probe(python: Path, names: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [str(python), "-c", PROBE, json.dumps(names)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


def describe_default() -> dict[str, Any]:
    """The facts of the interpreter the benches run by default (this one)."""
    return probe(Path(sys.executable), [])


def prepare(python: Path, label: str | None, echo: Callable[[str], None]) -> Interpreter:
    """A venv of ``python`` with the pinned packages, made (or brought up to the pins) on first
    use under the cache dir; the interpreter itself when it already holds them all."""
    wanted = pins()
    facts = probe(python, list(wanted))
    if facts["packages"] != wanted:
        venv = _venv_dir(python, facts)
        venv_python = venv / "bin" / "python"
        if not venv_python.exists():
            echo(f"making a venv of {python} in {venv} (first run only)")
            _ensure_venv_module(python, facts, echo)
            subprocess.run([str(python), "-m", "venv", str(venv)], check=True, timeout=300)
        facts = probe(venv_python, list(wanted))
        if facts["packages"] != wanted:
            echo(f"installing the sidecar's dependencies into {venv}")
            requirements = [f"{name}=={version}" for name, version in wanted.items()]
            pip = [str(venv_python), "-m", "pip", "install", "--quiet", "--no-deps"]
            subprocess.run([*pip, *requirements], check=True, timeout=1800)
            facts = probe(venv_python, list(wanted))
        differ = {n: v for n, v in facts["packages"].items() if v != wanted[n]}
        if differ:
            raise RuntimeError(f"{venv} does not hold the pinned versions: {differ}")
        python = venv_python
    return Interpreter(python, label or _label(facts), facts)


def _ensure_venv_module(python: Path, facts: dict[str, Any], echo: Callable[[str], None]) -> None:
    """Debian ships ``venv`` (and the ``ensurepip`` it needs) apart: install python3-venv with
    apt-get as root when Debian's python lacks it, as the benches install wrk and nginx."""
    check = [str(python), "-c", "import ensurepip, venv"]
    if subprocess.run(check, capture_output=True, timeout=60).returncode == 0:
        return
    debian = Path(facts["base_executable"]).resolve().parent == Path("/usr/bin")
    if not debian or os.geteuid() != 0:
        raise SystemExit(f"{python} has no venv module (Debian: apt-get install python3-venv)")
    echo("installing python3-venv with apt-get")
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "python3-venv"]
    subprocess.run(apt, check=True, env=apt_env, timeout=900)


def _venv_dir(python: Path, facts: dict[str, Any]) -> Path:
    # One venv per interpreter: its version, and a digest of its real path.
    where = Path(facts["base_executable"]).resolve()
    digest = hashlib.sha256(str(where).encode()).hexdigest()[:8]
    return VENVS / f"python{facts['version']}-{digest}"


def _label(facts: dict[str, Any]) -> str:
    return "py" + re.sub(r"[^0-9A-Za-z.]", "", facts["version"])


def summary(facts: dict[str, Any]) -> str:
    """One line for the table's heading: version, executable, how libpython is linked."""
    linked = "shared libpython" if facts["libpython_shared"] else "libpython linked in"
    return f"Python {facts['version']} ({facts['base_executable']}, {linked})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("python", type=Path, help="the interpreter to make a venv of")
    args = parser.parse_args(argv)
    other = prepare(args.python, None, lambda line: print(line, file=sys.stderr))
    print(summary(other.facts), file=sys.stderr)
    print(other.python)


if __name__ == "__main__":
    main()
