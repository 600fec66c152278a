"""CPU instructions per proxied call and per relayed chunk, counted by callgrind.

On a shared machine CPU time per request moves with the load; the instructions a process
executes for the same requests barely do. Each target runs alone under ``valgrind
--tool=callgrind`` (about 50 times slower, so only a few hundred requests): the sidecar of this
tree, the bare aiohttp relay on uvloop (``passthrough_proxy.py``, the floor) and, with
``--baseline DIR``, the sidecar of another tree. The simulated upstream and the client run
natively in other processes. After a warm-up the counters are zeroed (``callgrind_control
-z``), the requests are sent one after another on one keep-alive connection, and the counters
are dumped (``-d``): what the target executed for exactly those requests.

Figures: instructions per non-streamed chat completion, and per streamed one; the chunk figure
is the stream's excess over a call, divided by the chunks relayed per stream (a stream costs
about what a call costs, plus its chunks). Chunks are counted as the client receives them: the
upstream sends each one ``--chunk-delay-ms`` after the last, so each reaches the target, and
the client, as a read of its own. ``--chunks`` is only the simulator's most: it splits its short
answer into at most that many pieces (15 reads per stream with the default prompt).

    PYTHONPATH=sidecar:. .venv/bin/python bench/instructions.py --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import overhead_targets as targets
import overhead_wrk as wrk

HOST = targets.HOST
READY_S = 300.0  # start-up under callgrind takes a minute or two on a loaded machine
WARMUP_CALLS = 20
POLICY = targets.POLICY
# The interpreter that runs the sidecar and the relay (not the simulator): this one, or e.g. the
# venv `bench/interpreters.py /usr/bin/python3` prints, to count another build's instructions.
PYTHON = os.environ.get("SLUICE_BENCH_PYTHON") or sys.executable


def callgrind(argv: list[str], out: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv]


def start(
    name: str, argv: list[str], env: dict[str, str], workdir: Path
) -> subprocess.Popen[bytes]:
    log = (workdir / f"{name}.log").open("wb")
    return subprocess.Popen(
        callgrind(argv, workdir / f"{name}.callgrind"),
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env},
        cwd=targets.REPO,
        start_new_session=True,
    )


def sidecar_argv(workdir: Path, name: str, upstream: str) -> tuple[list[str], str, str]:
    policies = workdir / f"policies-{name}"
    policies.mkdir()
    (policies / "bench.yaml").write_text(POLICY.format(upstream=upstream))
    data, admin = targets.free_port(), targets.free_port()
    argv = [PYTHON, "-m", "sluice_sidecar", "--policy-dir", str(policies),
            "--host", HOST, "--data-port", str(data), "--admin-port", str(admin)]  # fmt: skip
    return argv, f"http://{HOST}:{data}", f"http://{HOST}:{admin}/readyz"


def relay_argv(upstream: str) -> tuple[list[str], str, str]:
    port = targets.free_port()
    script = str(targets.REPO / "bench" / "passthrough_proxy.py")
    argv = [PYTHON, script, "--host", HOST, "--port", str(port),
            "--upstream", upstream.removesuffix("/v1"), "--loop", "uvloop"]  # fmt: skip
    return argv, f"http://{HOST}:{port}", f"http://{HOST}:{port}/v1/models"


async def wait_ready(session: aiohttp.ClientSession, url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the target exited with {proc.returncode}")
        try:
            async with session.get(url, headers={"Authorization": "Bearer bench"}) as answer:
                if answer.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(1.0)
    raise RuntimeError(f"{url} not ready within {READY_S:.0f} s")


async def requests(session: aiohttp.ClientSession, base: str, count: int, stream: bool) -> int:
    """Send ``count`` requests one after another; the reads their answers took, in all."""
    body = wrk.REQUEST_BODY | ({"stream": True} if stream else {})
    headers = {"Authorization": "Bearer test"}
    reads = 0
    for _ in range(count):
        async with session.post(base + "/v1/chat/completions", json=body, headers=headers) as got:
            parts = []
            while part := await got.content.readany():
                parts.append(part)
            data = b"".join(parts)
            reads += len(parts)
            if got.status != 200 or (stream and b"[DONE]" not in data):
                raise RuntimeError(f"{base}: answered {got.status}: {data[:200]!r}")
    return reads


def counted(pid: int, workdir: Path, name: str, label: str) -> int:
    """Dump the counters since the last zeroing; the instructions they hold."""
    subprocess.run(["callgrind_control", "-d", label, str(pid)], check=True, capture_output=True)
    dumps = sorted(workdir.glob(f"{name}.callgrind.*"), key=lambda p: p.stat().st_mtime)
    text = dumps[-1].read_text(errors="replace")
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no totals in {dumps[-1]}")
    return int(found.group(1))


async def measure(
    name: str, argv: list[str], base: str, ready: str, env: dict[str, str], args, workdir: Path
) -> dict[str, float]:
    proc = start(name, argv, env, workdir)
    try:
        # wrk sends no User-Agent, the SDKs always do: --no-user-agent measures the first.
        skip = ("User-Agent",) if args.no_user_agent else ()
        async with aiohttp.ClientSession(skip_auto_headers=skip) as session:
            await wait_ready(session, ready, proc)
            await requests(session, base, WARMUP_CALLS, stream=False)
            await requests(session, base, WARMUP_CALLS // 4, stream=True)
            found = {}
            for label, stream in (("calls", False), ("streams", True)):
                zero = ["callgrind_control", "-z", str(proc.pid)]
                await asyncio.to_thread(subprocess.run, zero, check=True, capture_output=True)
                reads = await requests(session, base, args.calls, stream)
                total = await asyncio.to_thread(counted, proc.pid, workdir, name, label)
                found[label] = total / args.calls
                found[f"{label}_reads"] = reads / args.calls
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    chunks = found["streams_reads"]
    per_chunk = (found["streams"] - found["calls"]) / chunks
    return {"per_call": round(found["calls"]), "per_stream": round(found["streams"]),
            "per_chunk": round(per_chunk), "chunks": round(chunks, 1)}  # fmt: skip


def start_simulator(chunks: int, delay_ms: float) -> tuple[subprocess.Popen[bytes], str]:
    """The simulated upstream, natively; streams ``chunks`` chunks ``delay_ms`` apart, so that
    each reaches the target as a read of its own (as a provider's tokens do)."""
    port = targets.free_port()
    argv = [sys.executable, "-m", "tests.support.simulator", "--host", HOST,
            "--port", str(port), "--name", "sim",
            "--chunks", str(chunks), "--chunk-delay-ms", str(delay_ms)]  # fmt: skip
    sim = subprocess.Popen(argv, cwd=targets.REPO, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True,
                           env={**os.environ, "PYTHONPATH": str(targets.REPO)})  # fmt: skip
    return sim, f"http://{HOST}:{port}/v1"


async def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="sluice-instructions-") as tmp:
        workdir = Path(tmp)
        sim, upstream = start_simulator(args.chunks, args.chunk_delay_ms)
        try:
            trees = {"sidecar": targets.REPO}
            if args.baseline:
                trees["sidecar-baseline"] = args.baseline
            plans = [("relay-uvloop", *relay_argv(upstream), {})]
            for name, tree in trees.items():
                env = {"PYTHONPATH": os.pathsep.join([str(tree / "sidecar"), str(tree)]),
                       "SLUICE_ADMIN_TOKEN": "bench"}  # fmt: skip
                plans.append((name, *sidecar_argv(workdir, name, upstream), env))
            if args.targets:
                plans = [plan for plan in plans if plan[0] in args.targets.split(",")]
            for name, argv, base, ready, env in plans:
                print(f"[instructions] {name} under callgrind", file=sys.stderr, flush=True)
                results[name] = await measure(name, argv, base, ready, env, args, workdir)
        finally:
            os.killpg(sim.pid, signal.SIGTERM)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100, help="requests counted per figure")
    parser.add_argument("--chunks", type=int, default=50, help="content chunks per stream, at most")
    parser.add_argument(
        "--chunk-delay-ms", type=float, default=20.0, help="between two chunks of a stream"
    )
    parser.add_argument("--baseline", type=Path, help="also the sidecar of this source tree")
    parser.add_argument(
        "--targets",
        help="measure only these, comma-separated (relay-uvloop, sidecar, sidecar-baseline)",
    )
    parser.add_argument(
        "--no-user-agent", action="store_true", help="send no User-Agent (as wrk does)"
    )
    args = parser.parse_args(argv)
    load = os.getloadavg()
    results = asyncio.run(run(args))
    print(f"load average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after; "
          f"{args.calls} requests per figure")  # fmt: skip
    print("\n| target | instructions per call | per stream | chunks per stream | per chunk |")
    print("|---|---:|---:|---:|---:|")
    for name, row in results.items():
        print(f"| {name} | {row['per_call']:,} | {row['per_stream']:,} | {row['chunks']} "
              f"| {row['per_chunk']:,} |")  # fmt: skip


if __name__ == "__main__":
    main()
