"""Many long concurrent streams through the sidecar, beside direct, nginx and a bare relay.

Run from the repository root with the project's venv::

    .venv/bin/python bench/streaming.py [--quick] [--rounds 3] [--json FILE]

One process is the load: a paced SSE upstream (``stream_upstream.py``; first token after a
delay, then one chunk per interval) and N streaming clients (``stream_clients.py``; half send
the openai SDK's chat completion, half the anthropic SDK's message, each on its own keep-alive
connection, one stream after another). It runs pinned to CPU 1; every proxy runs alone on CPU 0
(``taskset``), as the issue measured. For each scenario and target it reports the time to first
chunk (p50/p99) and what the proxy adds to it over direct, each chunk's transit time from the
upstream's write to the client's read (p99), the p99 gap between two chunks of a stream over
direct's, the proxy's CPU per stream and per chunk (``/proc``, user + system, its process group
only), the share of its core it used, its peak RSS and open file descriptors, and the streams
it refused or broke. Every figure is the median over ``--rounds``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import interpreters
import overhead_targets as targets
import stream_clients as clients
import stream_targets
import stream_upstream as upstream
import uvloop

PROXY_CPU = 0
LOAD_CPU = 1
MAX_CLIENTS = 5000


@dataclasses.dataclass(frozen=True)
class Scenario:
    streams: int
    chunks: int
    interval_s: float
    first_token_s: float = 0.1

    @property
    def name(self) -> str:
        return f"{self.streams} streams x {self.chunks} chunks @{1 / self.interval_s:g}/s"

    @property
    def stream_s(self) -> float:
        return self.first_token_s + (self.chunks - 1) * self.interval_s


FULL = [
    Scenario(100, 50, 0.02),
    Scenario(200, 50, 0.02),
    Scenario(1000, 25, 0.2),
    Scenario(5000, 10, 1.0),
]
QUICK = [Scenario(50, 20, 0.02), Scenario(200, 10, 0.2)]

# name -> how to start it (fleet, upstream URL, profile folder); direct is the upstream itself.
Starter = Callable[[targets.Fleet, str, Path | None], Awaitable[targets.Server]]
SIDECAR_ENV = {"SLUICE_ADMIN_TOKEN": "bench"}


def _sidecar(
    loop: str, name: str = "", tree: Path = targets.REPO, python: Path | None = None
) -> Starter:
    name = name or f"sidecar-{loop}"
    env = SIDECAR_ENV | {"SLUICE_EVENT_LOOP": loop}

    def start(fleet: targets.Fleet, upstream: str, profiles: Path | None):  # type: ignore[no-untyped-def]
        profile = profiles / f"{name}.pyisession" if profiles else None
        return stream_targets.start_sidecar(fleet, upstream, name, env, profile, tree, python)

    return start


def _other_python(other: interpreters.Interpreter) -> dict[str, Starter]:
    """--python's targets: the bare relay and the sidecar on uvloop, run by that interpreter."""
    relay, sidecar = f"relay-uvloop@{other.label}", f"sidecar-uvloop@{other.label}"

    def start_relay(fleet: targets.Fleet, upstream: str, _: Path | None):  # type: ignore[no-untyped-def]
        return stream_targets.start_relay(
            fleet, upstream, "uvloop", python=other.python, name=relay
        )

    return {relay: start_relay, sidecar: _sidecar("uvloop", sidecar, python=other.python)}


TARGETS: dict[str, Starter] = {
    "nginx": lambda fleet, up, _: stream_targets.start_nginx(fleet, up),
    "relay-asyncio": lambda fleet, up, _: stream_targets.start_relay(fleet, up, "asyncio"),
    "relay-uvloop": lambda fleet, up, _: stream_targets.start_relay(fleet, up, "uvloop"),
    "relay-reqwest-uvloop": lambda fleet, up, _: stream_targets.start_relay(
        fleet, up, "uvloop", "reqwest"
    ),
    "sidecar-asyncio": _sidecar("asyncio"),
    "sidecar-uvloop": _sidecar("uvloop"),
}


def echo(message: str) -> None:
    print(f"[streaming] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small scenarios, short runs")
    parser.add_argument("--rounds", type=int, default=1, help="measure everything N times")
    parser.add_argument("--duration", type=float, default=None, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before measuring")
    parser.add_argument(
        "--targets", default="direct," + ",".join(TARGETS), help="comma-separated targets"
    )
    parser.add_argument("--streams", default="", help="only the scenarios with these N")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also measure the sidecar (uvloop) of this source tree, e.g. a checkout of the"
        " commit before a change, as the target sidecar-baseline",
    )
    parser.add_argument(
        "--python",
        type=Path,
        help="also measure the bare relay and the sidecar (uvloop) run by this interpreter, in"
        " a venv of it with the same packages (made on first use), as relay-uvloop@LABEL and"
        " sidecar-uvloop@LABEL",
    )
    parser.add_argument(
        "--python-label", help="LABEL of --python's targets (default: py and its version)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--profile", type=Path, help="run the sidecars under pyinstrument, reports in this folder"
    )
    args = parser.parse_args(argv)
    if args.profile:
        args.profile = args.profile.resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
    args.starters = dict(TARGETS)
    if args.baseline is not None:
        args.baseline = args.baseline.resolve()
        if not (args.baseline / "sidecar" / "sluice_sidecar" / "__main__.py").exists():
            parser.error(f"--baseline {args.baseline} has no sidecar/sluice_sidecar")
        baseline = _sidecar("uvloop", "sidecar-baseline", args.baseline)
        args.starters["sidecar-baseline"] = baseline
        if "--targets" not in " ".join(argv or sys.argv):
            args.targets += ",sidecar-baseline"
    args.other = None
    if args.python is not None:
        args.other = interpreters.prepare(args.python, args.python_label, echo)
        other = _other_python(args.other)
        args.starters |= other
        if "--targets" not in " ".join(argv or sys.argv):
            args.targets += "," + ",".join(other)
    args.targets = [t for t in args.targets.split(",") if t]
    unknown = set(args.targets) - {"direct", *args.starters}
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    args.scenarios = QUICK if args.quick else FULL
    if args.streams:
        wanted = {int(n) for n in args.streams.split(",")}
        args.scenarios = [s for s in args.scenarios if s.streams in wanted]
    if not 1 <= args.rounds <= 5 or any(s.streams > MAX_CLIENTS for s in args.scenarios):
        parser.error(f"--rounds must be 1..5 and at most {MAX_CLIENTS} streams")
    return args


def _durations(args: argparse.Namespace, scenario: Scenario) -> tuple[float, float]:
    """Warm-up (every client started, its first stream under way) and measured seconds."""
    warmup = args.warmup if args.warmup is not None else min(scenario.stream_s, 2.0) + 1.0
    default = 4.0 if args.quick else max(8.0, 2 * scenario.stream_s)
    return warmup, args.duration if args.duration is not None else default


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(
    scenario: Scenario,
    target: str,
    base_url: str,
    proxy: targets.Server | None,
    warmup_s: float,
    duration_s: float,
) -> dict[str, Any]:
    """Run ``scenario.streams`` clients against ``base_url``; return one row of figures."""
    host, port = base_url.removeprefix("http://").split(":")
    samples, window = clients.Samples(), clients.Window()
    requests = {
        api: clients.sdk_request(api, f"{host}:{port}", "") for api in ("openai", "anthropic")
    }
    swarm = [
        clients.StreamClient(
            host,
            int(port),
            requests["openai" if i % 2 else "anthropic"],
            scenario.chunks,
            samples,
            window,
        )
        for i in range(scenario.streams)
    ]
    # Clients arrive spread over up to a stream's length, not all in the same millisecond.
    spread_s = min(scenario.stream_s, 2.0)
    loop = asyncio.get_running_loop()
    for i, client in enumerate(swarm):
        loop.call_later(
            spread_s * i / len(swarm), lambda c=client: asyncio.ensure_future(c.connect())
        )
    await asyncio.sleep(warmup_s)
    cpu_before = targets.group_cpu_s(proxy.proc.pid) if proxy else 0.0
    window.start = time.monotonic_ns()
    window.end = window.start + int(duration_s * 1e9)
    rss_peak = fds_peak = 0
    while time.monotonic_ns() < window.end:
        await asyncio.sleep(0.5)
        if proxy:
            rss_peak = max(rss_peak, targets.group_rss_kib(proxy.proc.pid))
            fds_peak = max(fds_peak, stream_targets.group_fds(proxy.proc.pid))
    cpu_s = (targets.group_cpu_s(proxy.proc.pid) - cpu_before) if proxy else None
    for client in swarm:
        client.stop()
    await asyncio.sleep(1.0)  # let the proxy close its upstream connections
    return _row(scenario, target, samples, duration_s, cpu_s, rss_peak, fds_peak)


def _row(
    scenario: Scenario,
    target: str,
    samples: clients.Samples,
    duration_s: float,
    cpu_s: float | None,
    rss_kib: int,
    fds: int,
) -> dict[str, Any]:
    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 2)

    streams_equiv = samples.chunks / scenario.chunks
    row: dict[str, Any] = {
        "scenario": scenario.name,
        "target": target,
        "streams_done": samples.streams,
        "chunks_per_s": round(samples.chunks / duration_s),
        "ttfc_p50_ms": ms(_percentile(samples.ttfc_s, 0.5)),
        "ttfc_p99_ms": ms(_percentile(samples.ttfc_s, 0.99)),
        "transit_p50_ms": ms(_percentile(samples.transit_s, 0.5)),
        "transit_p99_ms": ms(_percentile(samples.transit_s, 0.99)),
        "gap_p99_ms": ms(_percentile(samples.gap_s, 0.99)),
        "errors": dict(samples.errors),
        "error_count": sum(samples.errors.values()),
    }
    if cpu_s is not None and samples.chunks:
        row |= {
            "cpu_us_per_stream": round(cpu_s * 1e6 / streams_equiv),
            "cpu_us_per_chunk": round(cpu_s * 1e6 / samples.chunks, 1),
            "core_pct": round(100 * cpu_s / duration_s),
            "rss_mib": round(rss_kib / 1024, 1),
            "fds": fds,
        }
    return row


def _added(rows: list[dict[str, Any]]) -> None:
    """Add each proxy's figures over direct's in the same scenario."""
    direct = {r["scenario"]: r for r in rows if r["target"] == "direct"}
    for row in rows:
        base = direct.get(row["scenario"])
        if base is None or row["target"] == "direct":
            continue
        for key in ("ttfc_p50_ms", "ttfc_p99_ms", "gap_p99_ms"):
            if row.get(key) is not None and base.get(key) is not None:
                row["added_" + key] = round(row[key] - base[key], 2)


def _median_rows(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    merged = []
    for rows in zip(*rounds, strict=True):
        first = dict(rows[0])
        for key, value in first.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                found = [r[key] for r in rows if isinstance(r.get(key), int | float)]
                first[key] = round(statistics.median(found), 2)
        first["errors"] = {
            k: statistics.median(r["errors"].get(k, 0) for r in rows)
            for k in {k for r in rows for k in r["errors"]}
        }
        merged.append(first)
    return merged


COLUMNS = [
    ("target", "target"),
    ("streams done", "streams_done"),
    ("chunks/s", "chunks_per_s"),
    ("TTFC p50 ms", "ttfc_p50_ms"),
    ("TTFC p99 ms", "ttfc_p99_ms"),
    ("added TTFC p50", "added_ttfc_p50_ms"),
    ("added TTFC p99", "added_ttfc_p99_ms"),
    ("transit p99 ms", "transit_p99_ms"),
    ("added gap p99", "added_gap_p99_ms"),
    ("CPU µs/stream", "cpu_us_per_stream"),
    ("CPU µs/chunk", "cpu_us_per_chunk"),
    ("core %", "core_pct"),
    ("RSS MiB", "rss_mib"),
    ("fds", "fds"),
    ("errors", "errors"),
]


def table(rows: list[dict[str, Any]]) -> str:
    lines = []
    for scenario in dict.fromkeys(r["scenario"] for r in rows):
        lines += [
            f"\n{scenario}\n",
            "| " + " | ".join(h for h, _ in COLUMNS) + " |",
            "|" + "---|" * len(COLUMNS),
        ]
        for row in (r for r in rows if r["scenario"] == scenario):
            cells = []
            for _, key in COLUMNS:
                value = row.get(key)
                if key == "errors":
                    value = ", ".join(f"{k} {v:g}" for k, v in sorted(value.items())) or "0"
                cells.append("" if value is None else str(value))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """CPU per chunk, per scenario: each sidecar over the bare relay on the same loop (and
    interpreter), the sidecar (uvloop) over the baseline tree's (``--baseline``), and each target
    run by ``--python`` over the same one run by the default interpreter."""
    found: dict[str, float] = {}
    by_key = {(r["scenario"], r["target"]): r for r in rows}
    for (scenario, target), row in by_key.items():
        if not row.get("cpu_us_per_chunk"):
            continue
        for label, other in _compared_with(target).items():
            under = by_key.get((scenario, other))
            if under and under.get("cpu_us_per_chunk"):
                found[f"{target}/{label} cpu per chunk, {scenario}"] = round(
                    row["cpu_us_per_chunk"] / under["cpu_us_per_chunk"], 2
                )
    return found


def _compared_with(target: str) -> dict[str, str]:
    """What a target's CPU per chunk is set against, by label."""
    below = {}
    if target.startswith("sidecar-"):
        loop = "uvloop" if target == "sidecar-baseline" else target.removeprefix("sidecar-")
        below["relay"] = "relay-" + loop
    if target == "sidecar-uvloop":
        below["baseline"] = "sidecar-baseline"
    if "@" in target:  # run by --python: against the same target run by the default python
        below["default python"] = target.split("@")[0]
    return below


def _git_commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(targets.REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def _versions() -> dict[str, str]:
    found = {
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "uvloop": uvloop.__version__,
    }
    found |= {k: v for k, v in targets.versions(None).items() if k == "nginx"}
    return found


async def run(args: argparse.Namespace) -> dict[str, Any]:
    pacing = upstream.Pacing(0.1, 0.02, 10)
    counters = {"streams": 0}
    server = await upstream.serve(targets.HOST, pacing, counters)
    up_url = f"http://{targets.HOST}:{server.sockets[0].getsockname()[1]}"
    all_rounds: list[list[dict[str, Any]]] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sluice-streaming-") as tmp:
        pin = None if args.no_pin else PROXY_CPU
        with targets.Fleet(Path(tmp), pin) as fleet:
            proxies: dict[str, targets.Server] = {}
            for name in args.targets:
                if name != "direct":
                    echo(f"starting {name}")
                    proxies[name] = await args.starters[name](fleet, up_url, args.profile)
            for round_no in range(args.rounds):
                rows = []
                for scenario in args.scenarios:
                    pacing.first_token_s = scenario.first_token_s
                    pacing.interval_s = scenario.interval_s
                    pacing.chunks = scenario.chunks
                    warmup_s, duration_s = _durations(args, scenario)
                    for name in args.targets:
                        echo(f"round {round_no + 1}: {scenario.name} -> {name}")
                        proxy = proxies.get(name)
                        url = proxy.base_url if proxy else up_url
                        rows.append(await measure(scenario, name, url, proxy, warmup_s, duration_s))
                _added(rows)
                all_rounds.append(rows)
    server.close()
    rows = _median_rows(all_rounds)
    return {
        "commit": _git_commit(),
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": targets.describe_cpu(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "versions": _versions(),
        "interpreters": {"default": interpreters.describe_default()}
        | ({args.other.label: args.other.facts} if args.other else {}),
        "rounds": args.rounds,
        "rows": rows,
        "round_rows": all_rounds,
        "ratios": ratios(rows),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.no_pin:
        os.sched_setaffinity(0, {LOAD_CPU})
    result = uvloop.run(run(args))
    print(
        f"commit {result['commit']}, {result['machine']}, load average "
        f"{result['load_average_before']} -> {result['load_average_after']}, "
        f"{result['versions']}, {args.rounds} round(s), medians"
    )
    for label, facts in result["interpreters"].items():
        print(f"{label}: {interpreters.summary(facts)}")
    print(table(result["rows"]))
    for key, value in result["ratios"].items():
        print(f"{key}: {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
