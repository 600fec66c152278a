"""Economics figures: the cache-hit path against the upstream path, and embeddings batching.

Run from the repository root::

    .venv/bin/python bench/economics.py [--duration 5] [--json FILE]

Starts the simulated upstream and two sidecars in front of it (one with the answer cache and
embeddings batching on, one with both off), then measures with wrk (one thread):

* ``cache hit``: the same deterministic chat completion (temperature 0) again and again, so
  every request after the first is answered from the memory cache;
* ``upstream``: the same request with ``X-LLM-Cache: bypass``, i.e. the proxied round trip a
  miss makes (lookup skipped, upstream called);

each at 1 and 32 connections (p50, p99, req/s); and embeddings with one input per request at 32
connections through the batching sidecar and the plain one (req/s, upstream calls, average
batch size and batch efficiency from ``GET /admin/batching``). Every process is stopped at the
end. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import overhead_targets as targets
import overhead_wrk as wrk

SERVER_CPU = 0
LOAD_CPU = 1
TOKEN = "bench-admin-token"
CHAT = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Say hello to the benchmark in a few words"}],
    "max_tokens": 16,
    "temperature": 0,
}
EMBEDDINGS = {"model": "text-embedding-3-small", "input": "one line of text to embed"}
POLICY = (
    targets.POLICY
    + """\
  cache: {{enabled: {on}, maxEntries: 10000}}
  batching: {{embeddings: {{enabled: {on}, maxBatchSize: 16, maxWaitMs: 10}}}}
"""
)


def script(directory: Path, name: str, body: dict[str, Any], headers: dict[str, str]) -> Path:
    return wrk.write_script(directory, name, body, headers)


def start_sidecar(fleet: targets.Fleet, upstream: targets.Server, name: str, on: bool):
    policy_dir = fleet.workdir / f"policies-{name}"
    policy_dir.mkdir()
    text = POLICY.format(upstream=upstream.base_url, on="true" if on else "false")
    (policy_dir / "bench.yaml").write_text(text)
    data_port, admin_port = targets.free_port(), targets.free_port()
    argv = [str(targets.VENV_BIN / "sluice-sidecar"), "--policy-dir", str(policy_dir),
            "--host", targets.HOST, "--data-port", str(data_port),
            "--admin-port", str(admin_port)]  # fmt: skip
    started = time.monotonic()
    proc, log = fleet.spawn(name, argv, env={"SLUICE_ADMIN_TOKEN": TOKEN})
    server = targets.Server(name, proc, f"http://{targets.HOST}:{data_port}/v1", log)
    targets.wait_ready(server, f"http://{targets.HOST}:{admin_port}/readyz", 60, started)
    server.admin = f"http://{targets.HOST}:{admin_port}"  # type: ignore[attr-defined]
    return server


def admin(server: targets.Server, path: str) -> dict[str, Any]:
    request = urllib.request.Request(
        server.admin + path,  # type: ignore[attr-defined]
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        return json.loads(reply.read())


def measure(
    server: targets.Server, url: str, lua: Path, connections: int, duration: float
) -> dict[str, Any]:
    cpu_before = targets.group_cpu_s(server.proc.pid)
    result = wrk.run(url, lua, connections=connections, duration_s=duration, cpu=LOAD_CPU)
    cpu = targets.group_cpu_s(server.proc.pid) - cpu_before
    return {
        "connections": connections,
        "rps": round(result.rps),
        "sidecar_cpu_us_per_request": round(cpu / result.requests * 1e6) if result.requests else 0,
        "p50_ms": round(result.p50_us / 1000, 3),
        "p99_ms": round(result.p99_us / 1000, 3),
        "errors": result.status_errors + result.socket_errors,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"cpu": targets.describe_cpu(), "duration_s": args.duration}
    with tempfile.TemporaryDirectory() as tmp, targets.Fleet(Path(tmp), SERVER_CPU) as fleet:
        work = Path(tmp)
        upstream = targets.start_simulator(fleet)
        economics = start_sidecar(fleet, upstream, "sidecar-economics", True)
        plain = start_sidecar(fleet, upstream, "sidecar-plain", False)
        hit = script(work, "hit", CHAT, {})
        bypass = script(work, "bypass", CHAT, {"X-LLM-Cache": "bypass"})
        chat_url = economics.base_url + "/chat/completions"
        measure(economics, chat_url, bypass, 32, 2)  # warm-up (connections, code paths)
        measure(economics, chat_url, hit, 32, 1)
        report["chat"] = [
            {"path": name, **measure(economics, chat_url, lua, connections, args.duration)}
            for connections in (1, 32)
            for name, lua in (("cache hit", hit), ("upstream", bypass))
        ]
        report["cache"] = admin(economics, "/admin/cache")
        embed = script(work, "embed", EMBEDDINGS, {"X-LLM-Cache": "bypass"})
        rows = []
        for name, server in (("batching on", economics), ("batching off", plain)):
            before = admin(server, "/admin/batching")
            row = measure(server, server.base_url + "/embeddings", embed, 32, args.duration)
            after = admin(server, "/admin/batching")
            requests = after["requestsBatched"] - before["requestsBatched"]
            batches = after["batches"] - before["batches"]
            row |= {
                "mode": name,
                "batches": batches,
                "requests_batched": requests,
                "average_batch_size": round(requests / batches, 2) if batches else 0,
                "batch_efficiency": round(1 - batches / requests, 3) if requests else 0,
            }
            rows.append(row)
        report["embeddings"] = rows
    return report


def render(report: dict[str, Any]) -> str:
    lines = [
        f"CPU: {report['cpu']}; {report['duration_s']} s per measurement",
        "",
        "| path | connections | req/s | p50 ms | p99 ms | sidecar CPU µs/req | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["chat"]:
        lines.append(
            f"| {row['path']} | {row['connections']} | {row['rps']} | {row['p50_ms']} "
            f"| {row['p99_ms']} | {row['sidecar_cpu_us_per_request']} | {row['errors']} |"
        )
    lines += [
        "",
        "| embeddings (1 input/request, 32 connections) | req/s | p50 ms | p99 ms | sidecar "
        "CPU µs/req | merged upstream calls | average batch size | batch efficiency |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["embeddings"]:
        lines.append(
            f"| {row['mode']} | {row['rps']} | {row['p50_ms']} | {row['p99_ms']} "
            f"| {row['sidecar_cpu_us_per_request']} | {row['batches']} "
            f"| {row['average_batch_size']} | {row['batch_efficiency']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    missing = targets.sidecar_missing()
    if missing is not None or not targets._has("wrk"):
        print(f"cannot run: {missing or 'wrk is not installed'}", file=sys.stderr)
        return 1
    report = run(args)
    print(render(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
