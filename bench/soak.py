"""Soak: 100,000 mixed calls through a real sidecar in front of the simulator; memory must plateau.

Run from the repository root::

    .venv/bin/python bench/soak.py [--calls 100000] [--concurrency 32] [--max-seconds 1800]
        [--json FILE]

Starts the simulated upstream (2 % of its answers 429 or 503) and one sidecar (``python -m
sluice_sidecar`` from this tree) with every economics feature on: pricing, a soft budget with a
per-session cap, the answer cache, embeddings batching, the priority queue and a state file.
Then sends the calls, ``--concurrency`` at a time, each with its own ``X-LLM-Session``, in a
fixed rotation of ten:

* chat, non-streamed, a model name never used before (4 of 10);
* chat, streamed, a new model name (2 of 10);
* the same deterministic chat again, answered from the cache (1 of 10);
* embeddings, batched with their neighbours (1 of 10);
* Anthropic messages, streamed every other time (1 of 10);
* a request the sidecar must refuse: body not JSON, or no model (1 of 10).

It prints the sidecar's resident memory (``VmRSS``) every 10,000 calls and the count of answers
by status, then what the usage ledger recorded against what the budget charged. Pass: RSS after
the last call within ``--plateau`` (10 %) of RSS at half-way, no answer 500, every call
answered, ledger cost equal to budget spend with nothing left reserved (no spend lost). Exit 1
when any of these fails, 2 when the run passed ``--max-seconds``. The client, the sidecar and
the simulator share the machine; the run is niced. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import selectors
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import overhead_targets as targets

TOKEN = "soak-admin-token"
LEDGER_KEYS = ("ledger_usd", "budget_usd", "reserved_usd")
REPORT_EVERY = 10_000  # fewer calls than ten times this: RSS every tenth of the run
POLICY = """\
apiVersion: sluice.dev/v1alpha1
kind: LlmPolicy
metadata: {{name: soak}}
spec:
  providers:
    - {{name: sim, type: openai-compatible, baseUrl: "{openai}"}}
    - {{name: sim-anthropic, type: anthropic, baseUrl: "{anthropic}"}}
  retry: {{strategy: exponential, maxAttempts: 2, baseDelayMs: 1, maxDelayMs: 5}}
  pricing:
    "soak-*": {{inputPer1M: 1, outputPer1M: 2}}
  cache: {{enabled: true, maxEntries: 1000}}
  batching: {{embeddings: {{enabled: true, maxBatchSize: 8, maxWaitMs: 5}}}}
  queue: {{maxConcurrent: 64, maxWaitMs: 5000}}
---
apiVersion: sluice.dev/v1alpha1
kind: LlmBudget
metadata: {{name: soak}}
spec:
  period: total
  enforcement: soft
  limits: {{costUSD: 1000000, perSessionCostUSD: 1}}
"""


@dataclass
class Tally:
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    done: int = 0
    rss_kib: dict[int, int] = field(default_factory=dict)
    spend: dict[str, str] = field(default_factory=dict)


def request_for(i: int) -> tuple[str, dict[str, str], bytes]:
    """(path, headers, body) of call ``i``: the rotation of the module docstring."""
    headers = {"Content-Type": "application/json", "X-LLM-Session": f"soak-session-{i}"}
    words = f"call {i} asks about rivers"
    chat = {"messages": [{"role": "user", "content": words}], "max_tokens": 16}
    kind = i % 10
    if kind < 4:
        body: Any = {"model": f"soak-model-{i}", **chat}
    elif kind < 6:
        body = {"model": f"soak-model-{i}", **chat, "stream": True}
    elif kind == 6:
        body = {"model": "soak-cached", **chat, "temperature": 0}
        body["messages"] = [{"role": "user", "content": "the same question every time"}]
    elif kind == 7:
        return (
            "/v1/embeddings",
            headers,
            json.dumps({"model": "soak-embed", "input": words}).encode(),
        )
    elif kind == 8:
        headers["anthropic-version"] = "2023-06-01"
        body = {"model": f"soak-claude-{i}", **chat, "stream": i % 20 == 8}
        return "/v1/messages", headers, json.dumps(body).encode()
    else:
        bad = b"{not json" if i % 20 == 9 else json.dumps(chat).encode()
        return "/v1/chat/completions", headers, bad
    return "/v1/chat/completions", headers, json.dumps(body).encode()


async def one(http: aiohttp.ClientSession, url: str, i: int, tally: Tally) -> None:
    path, headers, body = request_for(i)
    try:
        async with http.post(url + path, data=body, headers=headers) as response:
            await response.read()
            tally.statuses[response.status] += 1
    except (aiohttp.ClientError, TimeoutError) as error:
        tally.failures[type(error).__name__] += 1


async def drive(url: str, pid: int, calls: int, concurrency: int, tally: Tally) -> None:
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        numbers = iter(range(calls))
        every = min(REPORT_EVERY, max(calls // 10, 1))

        async def worker() -> None:
            for i in numbers:
                await one(http, url, i, tally)
                tally.done += 1
                if tally.done % every == 0:
                    rss = tally.rss_kib[tally.done] = targets.rss_kib(pid)
                    rate = tally.done / (time.monotonic() - started)
                    print(f"{tally.done:>7} calls  RSS {rss / 1024:7.1f} MiB  {rate:6.0f} calls/s")

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def start_simulator(fleet: targets.Fleet) -> targets.Server:
    """The simulated upstream, 2 % of its answers 429 or 503 (seeded)."""
    argv = [sys.executable, "-m", "tests.support.simulator", "--host", targets.HOST,
            "--port", "0", "--name", "sim", "--error-rate", "0.02", "--seed", "1"]  # fmt: skip
    proc, log = fleet.spawn("simulator", argv, env={"PYTHONPATH": str(targets.REPO)}, pipe=True)
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        line = proc.stdout.readline().decode().strip() if selector.select(30) else ""
    if not line.startswith("simulator listening on "):
        raise RuntimeError(f"simulator did not start: {line!r}\n{targets.log_tail(log)}")
    return targets.Server("simulator", proc, line.split()[-1] + "/v1", log)


def start_sidecar(fleet: targets.Fleet, upstream: targets.Server) -> tuple[targets.Server, str]:
    policy_dir = fleet.workdir / "policies"
    policy_dir.mkdir()
    origin = upstream.base_url.removesuffix("/v1")
    (policy_dir / "soak.yaml").write_text(POLICY.format(openai=upstream.base_url, anthropic=origin))
    data_port, admin_port = targets.free_port(), targets.free_port()
    argv = [sys.executable, "-m", "sluice_sidecar", "--policy-dir", str(policy_dir),
            "--host", targets.HOST, "--data-port", str(data_port), "--admin-port",
            str(admin_port), "--state-dir", str(fleet.workdir / "state"),
            "--log-level", "ERROR"]  # fmt: skip
    env = {"SLUICE_ADMIN_TOKEN": TOKEN, "PYTHONPATH": str(targets.REPO / "sidecar")}
    started = time.monotonic()
    proc, log = fleet.spawn("sidecar", argv, env=env)
    server = targets.Server("sidecar", proc, f"http://{targets.HOST}:{data_port}", log)
    targets.wait_ready(server, f"http://{targets.HOST}:{admin_port}/readyz", 60, started)
    return server, f"http://{targets.HOST}:{admin_port}"


def verdict(tally: Tally, calls: int, plateau: float) -> list[str]:
    """Why the run failed; empty when it passed."""
    problems = []
    half, last = tally.rss_kib.get(calls // 2), tally.rss_kib.get(calls)
    if half is None or last is None:
        problems.append(f"no RSS at {calls // 2} and {calls} calls (use a multiple of 20)")
    elif last > half * (1 + plateau):
        problems.append(f"RSS grew {100 * (last / half - 1):.1f} % from {calls // 2} to {calls}")
    if tally.statuses[500]:
        problems.append(f"{tally.statuses[500]} answers were 500")
    if tally.failures:
        problems.append(f"calls without an answer: {dict(tally.failures)}")
    spend = tally.spend
    ledger, budget, held = (Decimal(spend.get(k, "0")) for k in LEDGER_KEYS)
    if ledger != budget or held:
        problems.append(f"spend lost or held: {spend}")
    return problems


def spend_figures(admin_url: str) -> dict[str, str]:
    """What the usage ledger recorded (answered and unanswered) and the budget charged: with
    every call priced and the budget over all of them, the two must be equal and nothing left
    reserved."""

    def get(path: str) -> Any:
        request = urllib.request.Request(
            admin_url + path, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())

    [row] = get("/admin/budgets")["budgets"]
    totals = get("/admin/usage")["totals"]
    # The budget is charged answered calls and, at their worst case, attempts never answered.
    unanswered = Decimal(totals.get("unanswered", {}).get("possibleCostUSD", "0"))
    return {
        "ledger_usd": str(Decimal(totals["costUSD"]) + unanswered),
        "budget_usd": row["spentUSD"],
        "reserved_usd": row["reservedUSD"],
        "saved_usd": totals["savedUSD"],
        "estimated_calls": str(totals.get("estimatedUsageCalls", 0)),
    }


def run(args: argparse.Namespace) -> int:
    os.nice(5)  # a shared machine: the soak yields to interactive work (children inherit it)
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp, targets.Fleet(Path(tmp), None) as fleet:
        upstream = start_simulator(fleet)
        sidecar, admin_url = start_sidecar(fleet, upstream)
        rss_start = targets.rss_kib(sidecar.proc.pid)
        print(f"sidecar ready, RSS {rss_start / 1024:.1f} MiB; {args.calls} calls, "
              f"{args.concurrency} at a time")  # fmt: skip
        started = time.monotonic()
        try:
            asyncio.run(
                asyncio.wait_for(
                    drive(sidecar.base_url, sidecar.proc.pid, args.calls, args.concurrency, tally),
                    args.max_seconds,
                )
            )
        except TimeoutError:
            print(f"FAIL: not done after {args.max_seconds} s ({tally.done} calls)")
            return 2
        elapsed = time.monotonic() - started
        tally.spend = spend_figures(admin_url)
    problems = verdict(tally, args.calls, args.plateau)
    print(f"spend: {tally.spend}")
    print(f"{args.calls} calls in {elapsed:.0f} s; statuses {dict(sorted(tally.statuses.items()))}")
    if args.json:
        report = {
            "calls": args.calls,
            "concurrency": args.concurrency,
            "seconds": round(elapsed, 1),
            "rss_start_kib": rss_start,
            "rss_kib": tally.rss_kib,
            "statuses": dict(tally.statuses),
            "failures": dict(tally.failures),
            "spend": tally.spend,
            "problems": problems,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    for problem in problems:
        print(f"FAIL: {problem}")
    if not problems:
        print(f"PASS: memory plateaued (within {args.plateau:.0%} from half-way), no spend lost")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-seconds", type=float, default=1800)
    parser.add_argument("--plateau", type=float, default=0.10, help="allowed growth, a fraction")
    parser.add_argument("--json", help="write the figures to this file")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
