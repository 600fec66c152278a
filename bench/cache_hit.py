"""CPU of a cache hit against a proxied call, side by side, at 1 and 32 connections.

Run from the repository root::

    .venv/bin/python bench/cache_hit.py [--rounds 3] [--duration 5] [--tree OTHER_CHECKOUT]
    .venv/bin/python bench/cache_hit.py --profile hit.txt    # where a hit's CPU goes
    .venv/bin/python bench/cache_hit.py --callgrind 300 [--tree OTHER]   # instructions per call

Starts the simulated upstream and, per tree, a sidecar with the answer cache on (memory
back-end; the tree's ``sidecar/`` first on ``PYTHONPATH``: ``--tree`` adds e.g. a ``git
archive`` of the commit before a change). wrk (one thread, CPU 1) sends the same deterministic
chat completion: ``hit`` without headers, so every request after the first is answered from the
cache, and ``proxied`` with ``X-LLM-Cache: bypass``, the same pipeline with the upstream call.
The simulator and the sidecars share CPU 0. Every (tree, path, connections) is measured once per
round, round-robin, and the table shows medians. ``CPU µs/req`` is the sidecar process's user +
system time from ``/proc`` during the measurement over the requests answered; ``hit/proxied`` is
the ratio of the two in the same round, the figure the target of issue 13 is about (≤ 40 %).

``--callgrind N`` counts instructions instead, the steadiest figure on a shared machine: each
tree's sidecar runs under valgrind's callgrind (instrumentation switched on after start-up and
a warm-up), and one keep-alive connection sends N hits, N proxied calls, and both again; the
instructions of each batch over N are the figures (user-space only: the kernel's share of a
proxied call, its upstream socket, is not in them, so the ratio is higher than the CPU-time one).

``--profile FILE`` runs this tree's sidecar under pyinstrument (the ``bench`` extra) instead,
sends hits at 32 connections for ``--duration`` seconds, stops it (the report is written at
exit) and prints the report.
"""

from __future__ import annotations

import argparse
import glob
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import overhead_targets as targets
import overhead_wrk as wrk

SERVER_CPU = 0
LOAD_CPU = 1
CHAT = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Say hello to the benchmark in a few words"}],
    "max_tokens": 16,
    "temperature": 0,
}
POLICY = targets.POLICY + "  cache: {{enabled: true, maxEntries: 10000}}\n"
PATHS = {"hit": {}, "proxied": {"X-LLM-Cache": "bypass"}}
CONNECTIONS = (1, 32)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--tree", action="append", default=[], type=Path)
    parser.add_argument("--profile", type=Path, help="pyinstrument report of this tree's sidecar")
    parser.add_argument("--callgrind", type=int, metavar="N", help="instructions per call, N calls")
    parser.add_argument("--json", type=Path, help="write every round's figures here")
    return parser.parse_args(argv)


def start_sidecar(
    fleet: targets.Fleet,
    upstream: targets.Server,
    tree: Path,
    profile: Path | None = None,
    callgrind: Path | None = None,
) -> targets.Server:
    policy_dir = Path(tempfile.mkdtemp(dir=fleet.workdir, prefix="policies-"))
    (policy_dir / "bench.yaml").write_text(POLICY.format(upstream=upstream.base_url))
    data_port, admin_port = targets.free_port(), targets.free_port()
    # pyinstrument samples (low overhead, shares close to real); its report is written at exit.
    runner = ["-m", "pyinstrument", "-r", "text", "-i", "0.0002", "-o", str(profile)]
    runner = runner if profile else []
    if callgrind is not None:
        valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
        argv_head = [*valgrind, f"--callgrind-out-file={callgrind}", sys.executable]
    else:
        argv_head = [sys.executable]
    argv = [*argv_head, *runner, "-m", "sluice_sidecar", "--policy-dir", str(policy_dir),
            "--host", targets.HOST, "--data-port", str(data_port),
            "--admin-port", str(admin_port)]  # fmt: skip
    env = {"PYTHONPATH": os.pathsep.join([str(tree / "sidecar"), str(tree)])}
    started = time.monotonic()
    proc, log = fleet.spawn(f"sidecar-{data_port}", argv, env=env)
    server = targets.Server(str(tree), proc, f"http://{targets.HOST}:{data_port}/v1", log)
    ready_limit = 600 if callgrind else 60  # valgrind starts it about 30 times slower
    targets.wait_ready(server, f"http://{targets.HOST}:{admin_port}/readyz", ready_limit, started)
    return server


def first_answer(server: targets.Server, headers: dict[str, str]) -> str:
    """One call by hand (a proxy answering errors fast must not look fast); its x-sluice-cache."""
    request = urllib.request.Request(
        server.chat_url,
        data=json.dumps(CHAT).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer b", **headers},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert json.loads(reply.read())["choices"], "no answer"
        return reply.headers.get("x-sluice-cache", "")


def measure(server: targets.Server, lua: Path, connections: int, duration: float) -> dict:
    cpu_before = targets.group_cpu_s(server.proc.pid)
    result = wrk.run(server.chat_url, lua, connections=connections, duration_s=duration,
                     cpu=LOAD_CPU)  # fmt: skip
    cpu = targets.group_cpu_s(server.proc.pid) - cpu_before
    return {
        "rps": result.rps,
        "cpu_us": cpu / result.requests * 1e6 if result.requests else 0.0,
        "p50_ms": result.p50_us / 1000,
        "p99_ms": result.p99_us / 1000,
        "errors": result.status_errors + result.socket_errors,
    }


def run(args: argparse.Namespace, work: Path, fleet: targets.Fleet) -> dict[str, list[dict]]:
    upstream = targets.start_simulator(fleet)
    trees = {"this tree": targets.REPO} | {str(t): t.resolve() for t in args.tree}
    servers = {name: start_sidecar(fleet, upstream, tree) for name, tree in trees.items()}
    scripts = {path: wrk.write_script(work, path, CHAT, h) for path, h in PATHS.items()}
    for server in servers.values():
        first_answer(server, {})
        assert first_answer(server, {}) == "hit", "the second call was not a cache hit"
        assert first_answer(server, PATHS["proxied"]) == "bypass"
        for lua in scripts.values():
            measure(server, lua, 32, 1)  # warm-up: connections and code paths
    rows: dict[str, list[dict]] = {}
    for _ in range(args.rounds):
        for name, server in servers.items():
            for connections in CONNECTIONS:
                for path, lua in scripts.items():
                    figures = measure(server, lua, connections, args.duration)
                    rows.setdefault(f"{name}|{path}|{connections}", []).append(figures)
    return rows


def table(rows: dict[str, list[dict]]) -> str:
    lines = [
        "| tree | path | conns | req/s | p50 ms | p99 ms | CPU µs/req | hit/proxied CPU | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, runs in rows.items():
        tree, path, connections = label.split("|")
        med = {
            k: statistics.median(r[k] for r in runs) for k in ("rps", "cpu_us", "p50_ms", "p99_ms")
        }
        ratio = ""
        if path == "hit":
            proxied = rows[f"{tree}|proxied|{connections}"]
            pairs = zip(runs, proxied, strict=True)
            ratio = f"{statistics.median(h['cpu_us'] / p['cpu_us'] for h, p in pairs):.0%}"
        errors = sum(r["errors"] for r in runs)
        lines.append(
            f"| {tree} | {path} | {connections} | {med['rps']:.0f} | {med['p50_ms']:.2f} | "
            f"{med['p99_ms']:.2f} | {med['cpu_us']:.0f} | {ratio} | {errors} |"
        )
    return "\n".join(lines)


class KeepAliveCaller:
    """Sends the chat call again and again on one keep-alive connection (as wrk does)."""

    def __init__(self, server: targets.Server) -> None:
        host, port = server.base_url.removeprefix("http://").removesuffix("/v1").split(":")
        self._connection = http.client.HTTPConnection(host, int(port), timeout=60)
        self._body = json.dumps(CHAT).encode()

    def call(self, headers: dict[str, str]) -> str:
        all_headers = {"Content-Type": "application/json", "Authorization": "Bearer b", **headers}
        self._connection.request("POST", "/v1/chat/completions", self._body, all_headers)
        reply = self._connection.getresponse()
        assert reply.status == 200, reply.read()
        reply.read()
        return reply.headers.get("x-sluice-cache", "")


def callgrind_dump(pid: int, out: Path) -> int:
    """Dump the counters of a running callgrind and zero them; the instructions counted."""
    before = set(glob.glob(f"{out}*"))
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    for name in sorted(set(glob.glob(f"{out}*")) - before):
        for line in Path(name).read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"callgrind wrote no totals for {pid}")


def count_instructions(args: argparse.Namespace, work: Path, fleet: targets.Fleet) -> str:
    upstream = targets.start_simulator(fleet)
    trees = {"this tree": targets.REPO} | {str(t): t.resolve() for t in args.tree}
    lines = [
        "| tree | path | instructions per call (two batches) | hit/proxied |",
        "|---|---|---:|---:|",
    ]
    for index, (name, tree) in enumerate(trees.items()):
        out = work / f"callgrind-{index}.out"
        server = start_sidecar(fleet, upstream, tree, callgrind=out)
        caller = KeepAliveCaller(server)
        for _ in range(50):  # warm-up: the first call stores the answer
            caller.call(PATHS["proxied"])
            caller.call({})
        assert caller.call({}) == "hit"
        pid = server.proc.pid
        subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=True, capture_output=True)
        per_call: dict[str, list[float]] = {"hit": [], "proxied": []}
        for _ in range(2):
            for path, headers in PATHS.items():
                subprocess.run(
                    ["callgrind_control", "-z", str(pid)], check=True, capture_output=True
                )
                for _ in range(args.callgrind):
                    caller.call(headers)
                per_call[path].append(callgrind_dump(pid, out) / args.callgrind)
        ratio = statistics.mean(per_call["hit"]) / statistics.mean(per_call["proxied"])
        for path, counts in per_call.items():
            shown = ", ".join(f"{count:,.0f}" for count in counts)
            lines.append(
                f"| {name} | {path} | {shown} | {f'{ratio:.1%}' if path == 'hit' else ''} |"
            )
        fleet.procs.remove(server.proc)
        targets._stop(server.proc)
    return "\n".join(lines)


def profile(args: argparse.Namespace, work: Path, fleet: targets.Fleet) -> None:
    upstream = targets.start_simulator(fleet)
    server = start_sidecar(fleet, upstream, targets.REPO, profile=args.profile.resolve())
    first_answer(server, {})
    measure(server, wrk.write_script(work, "hit", CHAT, {}), 32, args.duration)
    fleet.stop_all()  # SIGTERM: the sidecar shuts down and pyinstrument writes its report
    print(args.profile.read_text())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not targets._has("wrk"):
        print("cannot run: wrk is not installed", file=sys.stderr)
        return 1
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, targets.Fleet(Path(tmp), SERVER_CPU) as fleet:
        if args.profile is not None:
            profile(args, Path(tmp), fleet)
            return 0
        if args.callgrind is not None:
            print(count_instructions(args, Path(tmp), fleet))
            print(f"load average {os.getloadavg()[0]:.2f} (1 min); {targets.describe_cpu()}")
            return 0
        rows = run(args, Path(tmp), fleet)
    load_after = os.getloadavg()
    print(table(rows))
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min); "
          f"{args.rounds} rounds x {args.duration:g} s; {targets.describe_cpu()}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"load": [load_before, load_after], "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
