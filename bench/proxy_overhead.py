"""What the sidecar adds to a request, side by side with no proxy, nginx and (optionally) LiteLLM.

Run from the repository root::

    .venv/bin/python bench/proxy_overhead.py [--duration 5] [--peers] [--otlp] [--json FILE]

One run starts the simulated upstream (``tests.support.simulator``), then nginx as a plain
keep-alive reverse proxy, the sidecar and, with ``--peers``, the LiteLLM proxy, all in front of
that same upstream on loopback; with ``--otlp`` also a second sidecar exporting OTLP traces and
metrics to a real OpenTelemetry Collector (export on and off side by side). wrk sends
non-streaming chat completions at 1 and 32 connections to each; the table shows throughput,
p50/p99 latency and what each proxy adds over the direct path. Every server is stopped when
the script ends, also on errors and Ctrl-C.
See bench/README.md for the method and the CPU pinning.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import interpreters
import overhead_targets as targets
import overhead_wrk as wrk

sys.path.insert(0, str(targets.REPO))  # for the collector harness of tests/otel
from tests.otel.collector import Collector, CollectorUnavailable, collector_binary

# The bare relays of --floor: (target, event loop, upstream client).
FLOORS = [
    ("aiohttp", "asyncio", "aiohttp"),
    ("aiohttp-uvloop", "uvloop", "aiohttp"),
    ("reqwest-uvloop", "uvloop", "reqwest"),
]
SERVER_CPU = 0  # the upstream and the proxy under test share this core
LOAD_CPU = 1  # wrk runs alone on this one
# The sidecar+otlp target: every call traced (the default sampler), metrics exported each
# second (the default is 60 s), to a collector on the load generator's core.
OTLP_ENV = {
    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    "OTEL_METRIC_EXPORT_INTERVAL": "1000",
    "OTEL_SERVICE_NAME": "sluice-bench",
}


def echo(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per target")
    parser.add_argument("--rounds", type=int, default=1, help="measure every target N times")
    parser.add_argument("--connections", default="1,32", help="comma-separated wrk connections")
    parser.add_argument("--peers", action="store_true", help="also measure the LiteLLM proxy")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure the bare relays (the floor): aiohttp on asyncio and on uvloop,"
        " pyreqwest on uvloop",
    )
    parser.add_argument(
        "--loops", action="store_true", help="also measure the sidecar on asyncio's event loop"
    )
    parser.add_argument(
        "--otlp",
        action="store_true",
        help="also measure the sidecar exporting OTLP (gRPC) to a real OpenTelemetry Collector",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also measure the sidecar of this source tree (another checkout, e.g. of the"
        " commit before a change) beside this one's, as sidecar-baseline",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="run the sidecars under pyinstrument; their sessions are written in this folder",
    )
    parser.add_argument(
        "--python",
        type=Path,
        help="also measure the bare relay (aiohttp, uvloop) and the sidecar run by this"
        " interpreter, in a venv of it with the same packages (made on first use), as"
        " aiohttp-uvloop@LABEL and sidecar@LABEL",
    )
    parser.add_argument(
        "--python-label", help="LABEL of --python's targets (default: py and its version)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    args = parser.parse_args(argv)
    args.connections = [int(c) for c in args.connections.split(",") if c.strip()]
    if not 1 <= args.duration <= 60 or not 0 <= args.warmup <= 30 or not 1 <= args.rounds <= 10:
        parser.error("--duration must be 1..60 s, --warmup 0..30 s, --rounds 1..10")
    if args.baseline is not None:
        args.baseline = args.baseline.resolve()
        if not (args.baseline / "sidecar" / "sluice_sidecar" / "__main__.py").exists():
            parser.error(f"--baseline {args.baseline} has no sidecar/sluice_sidecar")
    if args.profile is not None:
        args.profile = args.profile.resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
    return args


def smoke_check(server: targets.Server) -> None:
    """One request by hand: a proxy that answers errors fast must not look fast."""
    body = json.dumps(wrk.REQUEST_BODY).encode()
    request = urllib.request.Request(
        server.chat_url,
        data=body,
        headers={"Content-Type": "application/json", "Authorization": "Bearer test"},
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        answer = json.loads(reply.read())
    content = answer["choices"][0]["message"]["content"]
    if "Simulated answer" not in content:
        raise RuntimeError(f"{server.name} answered something else: {answer}")


def warm_up(
    server: targets.Server, args: argparse.Namespace, script: Path, cpu: int | None
) -> None:
    smoke_check(server)
    if args.warmup:
        wrk.run(server.chat_url, script, connections=max(args.connections),
                duration_s=args.warmup, cpu=cpu)  # fmt: skip


def measure(
    name: str, server: targets.Server, connections: int, args: argparse.Namespace,
    script: Path, cpu: int | None,
) -> dict[str, Any]:  # fmt: skip
    cpu_before = targets.group_cpu_s(server.proc.pid)
    result = wrk.run(
        server.chat_url, script, connections=connections, duration_s=args.duration, cpu=cpu
    )
    cpu_us = (targets.group_cpu_s(server.proc.pid) - cpu_before) * 1e6 / max(result.requests, 1)
    echo(f"{name:>8} c={connections:<3} {result.rps:9.0f} req/s  "
         f"p50 {result.p50_us / 1000:.2f} ms  p99 {result.p99_us / 1000:.2f} ms  "
         f"cpu {cpu_us:.0f} us/req")  # fmt: skip
    return {
        "target": name,
        "connections": connections,
        "rps": round(result.rps, 1),
        "p50_ms": round(result.p50_us / 1000, 3),
        "p90_ms": round(result.p90_us / 1000, 3),
        "p99_ms": round(result.p99_us / 1000, 3),
        "cpu_us_per_req": round(cpu_us, 1),
        "requests": result.requests,
        "errors": result.status_errors + result.socket_errors,
    }


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per target and connection count: the median of each figure over the rounds."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["target"], run["connections"]), []).append(run)
    rows = []
    for (target, connections), group in groups.items():
        row: dict[str, Any] = {"target": target, "connections": connections}
        for key in ("rps", "p50_ms", "p90_ms", "p99_ms", "cpu_us_per_req"):
            row[key] = statistics.median(r[key] for r in group)
        row["requests"] = sum(r["requests"] for r in group)
        row["errors"] = sum(r["errors"] for r in group)
        row["rounds"] = len(group)
        rows.append(row)
    return rows


def add_overheads(rows: list[dict[str, Any]]) -> None:
    direct = {r["connections"]: r for r in rows if r["target"] == "direct"}
    for row in rows:
        base = direct.get(row["connections"])
        if base is None or row["target"] == "direct":
            row["added_p50_ms"] = row["added_p99_ms"] = None
            continue
        row["added_p50_ms"] = round(row["p50_ms"] - base["p50_ms"], 3)
        row["added_p99_ms"] = round(row["p99_ms"] - base["p99_ms"], 3)


def ratios(
    rows: list[dict[str, Any]], low: int, high: int, label: str | None = None
) -> dict[str, float | None]:
    def get(target: str, connections: int, key: str) -> float | None:
        for row in rows:
            if row["target"] == target and row["connections"] == connections:
                return row[key]
        return None

    def div(a: float | None, b: float | None) -> float | None:
        # A proxy "adding" zero or negative latency is noise: no meaningful ratio then.
        return round(a / b, 3) if a is not None and b is not None and b > 0 else None

    wanted = [
        ("sidecar_vs_direct_rps", "sidecar", "direct", high, "rps"),
        ("nginx_vs_direct_rps", "nginx", "direct", high, "rps"),
        ("sidecar_vs_litellm_rps", "sidecar", "litellm", high, "rps"),
        ("sidecar_vs_nginx_added_p50", "sidecar", "nginx", low, "added_p50_ms"),
        ("sidecar_vs_nginx_added_p99", "sidecar", "nginx", low, "added_p99_ms"),
        ("otlp_vs_no_export_rps", "sidecar+otlp", "sidecar", high, "rps"),
        ("otlp_vs_no_export_rps", "sidecar+otlp", "sidecar", low, "rps"),
        ("otlp_vs_no_export_p50", "sidecar+otlp", "sidecar", low, "p50_ms"),
    ]
    found = {
        f"{name}_{conns}c": div(get(top, conns, key), get(bottom, conns, key))
        for name, top, bottom, conns, key in wanted
    }
    found["sidecar_vs_nginx_cpu_per_request"] = div(
        get("sidecar", high, "cpu_us_per_req"), get("nginx", high, "cpu_us_per_req")
    )
    # The sidecar (uvloop by default) over the bare relay on the same loop and client.
    found["sidecar_vs_aiohttp_uvloop_cpu_per_request"] = div(
        get("sidecar", high, "cpu_us_per_req"), get("aiohttp-uvloop", high, "cpu_us_per_req")
    )
    found["sidecar_asyncio_vs_aiohttp_cpu_per_request"] = div(
        get("sidecar-asyncio", high, "cpu_us_per_req"), get("aiohttp", high, "cpu_us_per_req")
    )
    found["reqwest_vs_aiohttp_uvloop_cpu_per_request"] = div(
        get("reqwest-uvloop", high, "cpu_us_per_req"),
        get("aiohttp-uvloop", high, "cpu_us_per_req"),
    )
    found["sidecar_uvloop_vs_asyncio_cpu_per_request"] = div(
        get("sidecar", high, "cpu_us_per_req"), get("sidecar-asyncio", high, "cpu_us_per_req")
    )
    found["otlp_vs_no_export_cpu_per_request"] = div(
        get("sidecar+otlp", high, "cpu_us_per_req"), get("sidecar", high, "cpu_us_per_req")
    )
    found["sidecar_vs_litellm_cpu_per_request"] = div(
        get("sidecar", high, "cpu_us_per_req"), get("litellm", high, "cpu_us_per_req")
    )
    for conns in sorted({low, high}):
        found[f"sidecar_vs_baseline_cpu_per_request_{conns}c"] = div(
            get("sidecar", conns, "cpu_us_per_req"),
            get("sidecar-baseline", conns, "cpu_us_per_req"),
        )
    if label is not None:
        found.update(_python_ratios(get, div, label, high))
    return found


def _python_ratios(
    get: Callable[[str, int, str], float | None],
    div: Callable[[float | None, float | None], float | None],
    label: str,
    high: int,
) -> dict[str, float | None]:
    """The sidecar under --python over its own relay, over the default sidecar and LiteLLM."""
    sidecar, relay = f"sidecar@{label}", f"aiohttp-uvloop@{label}"
    cpu = "cpu_us_per_req"
    return {
        f"sidecar@{label}_vs_aiohttp_uvloop@{label}_cpu_per_request": div(
            get(sidecar, high, cpu), get(relay, high, cpu)
        ),
        f"sidecar@{label}_vs_sidecar_cpu_per_request": div(
            get(sidecar, high, cpu), get("sidecar", high, cpu)
        ),
        f"aiohttp_uvloop@{label}_vs_aiohttp_uvloop_cpu_per_request": div(
            get(relay, high, cpu), get("aiohttp-uvloop", high, cpu)
        ),
        f"sidecar@{label}_vs_litellm_rps_{high}c": div(
            get(sidecar, high, "rps"), get("litellm", high, "rps")
        ),
    }


def render(report: dict[str, Any]) -> str:
    def ms(value: float | None) -> str:
        return "" if value is None else f"{value:+.2f}"

    meta = report.get("meta")
    # The load average goes with the figures: on a shared machine it says how far to trust them.
    heading = (
        [
            f"commit {meta['commit']}, load average {meta['loadavg_before']} before and"
            f" {meta['loadavg_after']} after, {meta['rounds']} round(s) x {meta['duration_s']} s,"
            " medians",
            *(
                f"{label}: {interpreters.summary(facts)}"
                for label, facts in meta.get("interpreters", {}).items()
            ),
            "",
        ]
        if meta
        else []
    )
    lines = [
        *heading,
        "| target | conns | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms "
        "| CPU µs/req | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['target']} | {r['connections']} | {r['rps']:.0f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {ms(r['added_p50_ms'])} | {ms(r['added_p99_ms'])} "
            f"| {r['cpu_us_per_req']:.0f} | {r['errors']} |"
        )
    lines.append("")
    for name, value in report["ratios"].items():
        lines.append(f"- {name}: {'n/a' if value is None else value}")
    for name, server in report["servers"].items():
        if server.get("rss_mib") is not None:
            lines.append(
                f"- {name}: ready in {server['ready_s']:.2f} s, "
                f"resident memory after the run {server['rss_mib']:.1f} MiB"
            )
    for name, reason in report["skipped"].items():
        lines.append(f"- {name}: not measured ({reason})")
    if report.get("otlp_received"):
        got = report["otlp_received"]
        lines.append(f"- the collector received {got['spans']} spans, {got['metrics']} metrics")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    began = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    targets.ensure_tools(echo)
    pin = not args.no_pin and (targets.shutil.which("taskset") is not None)
    server_cpu, load_cpu = (SERVER_CPU, LOAD_CPU) if pin else (None, None)
    skipped: dict[str, str] = {}
    litellm = None
    if args.peers:
        try:
            litellm = targets.ensure_litellm(echo)
        except (subprocess.SubprocessError, OSError) as error:
            skipped["litellm"] = f"install failed: {error}"
    runs: list[dict[str, Any]] = []
    servers: dict[str, dict[str, Any]] = {}
    load = os.getloadavg()[0]
    if load > 0.5:
        echo(f"note: load average {load:.2f} before the run: other work may skew the figures")
    collector: Collector | None = None
    other = interpreters.prepare(args.python, args.python_label, echo) if args.python else None
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp, \
            targets.Fleet(Path(tmp), server_cpu) as fleet, \
            contextlib.ExitStack() as stack:  # fmt: skip
        script = wrk.write_script(Path(tmp))
        sim = targets.start_simulator(fleet)
        echo(f"simulator ready at {sim.base_url} in {sim.ready_s:.2f} s")
        started = [("direct", sim)]
        started.append(("nginx", targets.start_nginx(fleet, sim)))
        if args.floor:
            for name, loop, client in FLOORS:
                started.append((name, targets.start_passthrough(fleet, sim, name, loop, client)))
        if (reason := targets.sidecar_missing()) is None:

            def profile(name: str) -> Path | None:
                return args.profile / f"{name}.pyisession" if args.profile else None

            server = targets.start_sidecar(fleet, sim, profile=profile("sidecar"))
            started.append(("sidecar", server))
            if args.baseline is not None:
                server = targets.start_sidecar(
                    fleet, sim, "sidecar-baseline", tree=args.baseline, profile=profile("baseline")
                )
                started.append(("sidecar-baseline", server))
            if args.loops:
                asyncio_env = {"SLUICE_EVENT_LOOP": "asyncio"}
                server = targets.start_sidecar(fleet, sim, "sidecar-asyncio", asyncio_env)
                started.append(("sidecar-asyncio", server))
            if args.otlp:
                try:
                    collector = start_collector(stack, Path(tmp), load_cpu)
                    server = start_exporting_sidecar(stack, Path(tmp), sim, server_cpu, collector)
                    started.append(("sidecar+otlp", server))
                except CollectorUnavailable as error:
                    skipped["sidecar+otlp"] = str(error)
            if other is not None:
                started += start_other_python(fleet, sim, other)
        else:
            skipped["sidecar"] = reason
        if litellm is not None:
            started.append(("litellm", targets.start_litellm(fleet, sim, litellm)))
        for name, server in started:
            echo(f"warming up {name} ({server.chat_url})")
            warm_up(server, args, script, load_cpu)
        for round_no in range(1, args.rounds + 1):
            echo(f"round {round_no} of {args.rounds}")
            for name, server in started:
                for connections in args.connections:
                    runs.append(measure(name, server, connections, args, script, load_cpu))
        for name, server in started[1:]:
            servers[name] = {
                "ready_s": round(server.ready_s, 3),
                "rss_mib": round(_rss_kib(name, server) / 1024, 1),
            }
        otlp = _received(collector) if collector is not None else None
    rows = summarize(runs)
    add_overheads(rows)
    return {
        "meta": {
            "date": began,
            "commit": _commit(),
            "machine": targets.describe_cpu(),
            "python": platform.python_version(),
            "interpreters": _interpreters(other),
            "pinning": f"servers on CPU {server_cpu}, wrk on CPU {load_cpu}" if pin else "none",
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "loadavg_before": round(load, 2),
            "loadavg_after": round(os.getloadavg()[0], 2),
            "baseline": str(args.baseline) if args.baseline else None,
            "request": wrk.REQUEST_BODY,
            "versions": targets.versions(litellm),
        },
        "results": rows,
        "runs": runs,
        "ratios": ratios(
            rows, min(args.connections), max(args.connections), other.label if other else None
        ),
        "servers": servers,
        "skipped": skipped,
        "otlp_received": otlp,
    }


def start_other_python(
    fleet: targets.Fleet, sim: targets.Server, other: interpreters.Interpreter
) -> list[tuple[str, targets.Server]]:
    """The bare relay on uvloop (the sidecar's floor) and the sidecar, run by --python."""
    relay = f"aiohttp-uvloop@{other.label}"
    started = [(relay, targets.start_passthrough(fleet, sim, relay, "uvloop", python=other.python))]
    sidecar = f"sidecar@{other.label}"
    started.append((sidecar, targets.start_sidecar(fleet, sim, sidecar, python=other.python)))
    return started


def _interpreters(other: interpreters.Interpreter | None) -> dict[str, dict[str, Any]]:
    """What ran the targets: this interpreter, and --python's under its label."""
    found = {"default": interpreters.describe_default()}
    if other is not None:
        found[other.label] = other.facts
    return found


def start_collector(stack: contextlib.ExitStack, workdir: Path, cpu: int | None) -> Collector:
    launcher = ("taskset", "-c", str(cpu)) if cpu is not None else ()
    collector = Collector(collector_binary(), workdir / "otelcol", launcher=launcher)
    collector.start()
    stack.callback(collector.stop)
    echo(f"collector ready at {collector.grpc_endpoint}")
    return collector


def start_exporting_sidecar(
    stack: contextlib.ExitStack,
    workdir: Path,
    upstream: targets.Server,
    cpu: int | None,
    collector: Collector,
) -> targets.Server:
    # Its own folder: start_sidecar writes its policy and log under the fleet's workdir.
    (workdir / "otlp").mkdir()
    fleet = stack.enter_context(targets.Fleet(workdir / "otlp", cpu))
    with _environ(OTLP_ENV | {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.grpc_endpoint}):
        return targets.start_sidecar(fleet, upstream)


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """These variables set for the processes started inside (Fleet.spawn passes os.environ)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _received(collector: Collector) -> dict[str, int]:
    """What the collector got: proof that the sidecar+otlp target really exported."""
    return {"spans": len(collector.spans()), "metrics": len(collector.metrics())}


def _commit() -> str:
    """The repository's commit, marked ``-dirty`` when the sidecar's sources differ from it."""

    def git(*argv: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(targets.REPO), *argv], capture_output=True, text=True, timeout=30
        )
        return done.stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "sidecar")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def _rss_kib(name: str, server: targets.Server) -> int:
    # The sidecar and the relays are one process: its own VmRSS. nginx and LiteLLM may fork:
    # the whole group.
    if name in {"nginx", "litellm"}:
        return targets.group_rss_kib(server.proc.pid)
    return targets.rss_kib(server.proc.pid)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the Fleet's exit stops every server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    try:
        report = run(args)
    except KeyboardInterrupt:
        echo("interrupted; servers stopped")
        return 130
    report["meta"]["total_s"] = round(time.monotonic() - began, 1)
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        echo(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
