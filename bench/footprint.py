"""Footprint of an idle sidecar: time to ready, CPU spent starting, resident memory.

Run from the repository root::

    .venv/bin/python bench/footprint.py [--starts 5] [--tree OTHER_CHECKOUT ...] [--json FILE]

Starts ``python -m sluice_sidecar --policy-dir DIR`` (standalone mode, one openai-compatible
provider, no OTLP endpoint, no Redis) ``--starts`` times per tree, the trees taken in turn so
that each round measures all of them under the same load. Per start: seconds from spawn to the
first 200 of ``/readyz`` (ready), the process's user + system CPU time at that moment (steadier
than wall time on a shared machine), and after ``--settle`` seconds idle its ``VmRSS``, and the
anonymous and file-backed parts of it from ``/proc/PID/smaps_rollup``. Prints the median of each
figure per tree and the load average before and after. ``--tree`` adds another checkout (its
``sidecar/`` goes first on ``PYTHONPATH``), e.g. a ``git archive`` of the commit before a change.

Bytecode: the image runs from compiled ``.pyc`` files (pip compiles at install), while a source
tree run with ``PYTHONDONTWRITEBYTECODE=1`` compiles every module on every start. By default each
tree gets a bytecode cache of its own (``PYTHONPYCACHEPREFIX`` in the run's temporary folder,
filled by one start that is not counted), as in the image; ``--from-source`` measures without.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import overhead_targets as targets

POLICY = """\
apiVersion: sluice.dev/v1alpha1
kind: LlmPolicy
metadata: {name: footprint}
spec:
  providers:
    - {name: sim, type: openai-compatible, baseUrl: "http://127.0.0.1:9/v1"}
"""
FIGURES = ("ready_s", "cpu_s", "rss_mib", "anon_mib", "file_mib")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=5, help="starts per tree (default 5)")
    parser.add_argument(
        "--tree", action="append", default=[], type=Path, help="another checkout to measure"
    )
    parser.add_argument("--settle", type=float, default=1.0, help="idle seconds before RSS")
    parser.add_argument("--cpu", type=int, default=0, help="pin the sidecar to this CPU")
    parser.add_argument(
        "--from-source", action="store_true", help="no bytecode cache: compile on every start"
    )
    parser.add_argument(
        "--no-watch", action="store_true", help="the sidecar does not watch its policy folder"
    )
    parser.add_argument("--json", type=Path, help="write every start's figures here")
    return parser.parse_args(argv)


def smaps_mib(pid: int) -> dict[str, float]:
    """Resident memory of one process and its anonymous and file-backed parts, in MiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        fields[name] = int(rest.split()[0])
    rss = fields.get("Rss", 0)
    anon = fields.get("Anonymous", 0)
    return {"rss_mib": rss / 1024, "anon_mib": anon / 1024, "file_mib": (rss - anon) / 1024}


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_env(tree: Path, pycache: Path | None) -> dict[str, str]:
    env = {"PYTHONPATH": os.pathsep.join([str(tree / "sidecar"), str(tree)])}
    if pycache is not None:
        env |= {"PYTHONPYCACHEPREFIX": str(pycache), "PYTHONDONTWRITEBYTECODE": ""}
    return env


def start_once(
    fleet: targets.Fleet, env: dict[str, str], settle_s: float, extra: list[str]
) -> dict[str, float]:
    policy_dir = Path(tempfile.mkdtemp(dir=fleet.workdir, prefix="policies-"))
    (policy_dir / "footprint.yaml").write_text(POLICY)
    data_port, admin_port = targets.free_port(), targets.free_port()
    argv = [sys.executable, "-m", "sluice_sidecar", "--policy-dir", str(policy_dir),
            "--host", targets.HOST, "--data-port", str(data_port),
            "--admin-port", str(admin_port), *extra]  # fmt: skip
    started = time.monotonic()
    proc, log = fleet.spawn(f"sidecar-{data_port}", argv, env=env)
    server = targets.Server("sidecar", proc, f"http://{targets.HOST}:{data_port}/v1", log)
    targets.wait_ready(server, f"http://{targets.HOST}:{admin_port}/readyz", 60, started)
    figures = {"ready_s": server.ready_s, "cpu_s": cpu_s(proc.pid)}
    time.sleep(settle_s)  # idle on purpose: what an unused sidecar holds
    figures |= smaps_mib(proc.pid)
    fleet.stop_all()
    return figures


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in FIGURES}


def table(results: dict[str, list[dict[str, float]]]) -> str:
    lines = [
        "| tree | starts | ready s | CPU s to ready | RSS MiB | anonymous MiB | file MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        m = medians(runs)
        lines.append(
            f"| {name} | {len(runs)} | {m['ready_s']:.2f} | {m['cpu_s']:.2f} | "
            f"{m['rss_mib']:.1f} | {m['anon_mib']:.1f} | {m['file_mib']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    trees = {"this tree": targets.REPO} | {str(tree): tree.resolve() for tree in args.tree}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    extra = ["--no-watch"] if args.no_watch else []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sluice-footprint-") as tmp:
        envs = {
            name: tree_env(tree, None if args.from_source else Path(tmp, f"pycache-{index}"))
            for index, (name, tree) in enumerate(trees.items())
        }
        with targets.Fleet(Path(tmp), args.cpu) as fleet:
            if not args.from_source:
                for env in envs.values():
                    start_once(fleet, env, 0.0, extra)  # writes the tree's bytecode cache
            for _ in range(args.starts):
                for name, env in envs.items():
                    results[name].append(start_once(fleet, env, args.settle, extra))
    load_after = os.getloadavg()
    print(table(results))
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    cache = "compiled on every start" if args.from_source else "bytecode cached, as in the image"
    print(f"python {sys.version.split()[0]}, {targets.describe_cpu()}; {cache}")
    if args.json:
        record = {"load_before": load_before, "load_after": load_after, "runs": results}
        args.json.write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
