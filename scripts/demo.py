"""The demo workload: a real sidecar process, simulated providers, the official openai SDK.

Run from the repository root as a module, so the simulator imports as ``tests.support``:
``.venv/bin/python -m scripts.demo`` (``scripts/demo`` does).

Phases: normal traffic with a flaky primary provider (retries), then a primary outage (breaker
opens, calls fall back to the self-hosted provider). Prints what the sidecar reports.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
import tempfile
from pathlib import Path

import aiohttp
import openai

from tests.support.simulator import Fail, SimulatedLLM

ROOT = Path(__file__).resolve().parents[1]

OPERATIONS = ["ScriptGeneration", "SceneAnalysis", "ThumbnailCaption", "Completion"]


async def start_sidecar(primary: SimulatedLLM, backup: SimulatedLLM, token: str, secrets_dir: Path):
    env = os.environ | {
        "SLUICE_ADMIN_TOKEN": token,
        "SLUICE_DATA_PORT": "0",
        "SLUICE_ADMIN_PORT": "0",
        "SLUICE_SECRETS_DIR": str(secrets_dir),
        "SLUICE_PROVIDER_BASE_URL_OPENAI": primary.openai_base_url,
        "SLUICE_PROVIDER_BASE_URL_VLLM": backup.openai_base_url,
        "SLUICE_RETRY_BASE_DELAY_MS": "20",  # keep the demo short; the policy says 1000
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sluice_sidecar",
        "--policy-dir",
        str(ROOT / "examples/02-studio"),
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    while True:
        line = (await process.stderr.readline()).decode()
        if not line:
            raise SystemExit("the sidecar exited before it was ready")
        print("  sidecar |", line.rstrip())
        if "serving LLM API" in line:
            data_port = int(line.split("127.0.0.1:")[1].split(",")[0])
            admin_port = int(line.split("127.0.0.1:")[2].split(" ")[0])
            return process, data_port, admin_port


async def relay_logs(process: asyncio.subprocess.Process, verbose: bool) -> None:
    assert process.stderr is not None
    while line := await process.stderr.readline():
        text = line.decode().rstrip()
        if verbose or "WARNING" in text or "ERROR" in text:
            print("  sidecar |", text)


async def one_call(client: openai.AsyncOpenAI, index: int) -> str:
    operation = OPERATIONS[index % len(OPERATIONS)]
    headers = {"X-LLM-Operation": operation, "X-LLM-Session": "demo-run"}
    messages = [{"role": "user", "content": f"Scene {index}: describe the river at dawn"}]
    try:
        if index % 3 == 0:
            stream = await client.chat.completions.create(
                model="gpt-4o", messages=messages, stream=True, extra_headers=headers
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        completion = await client.chat.completions.create(
            model="gpt-4o", messages=messages, extra_headers=headers
        )
        return completion.choices[0].message.content or ""
    except openai.APIError as error:
        return f"error: {error}"


async def workload(client: openai.AsyncOpenAI, calls: int, start: int) -> list[str]:
    limit = asyncio.Semaphore(8)

    async def limited(i: int) -> str:
        async with limit:
            return await one_call(client, i)

    return await asyncio.gather(*(limited(i) for i in range(start, start + calls)))


def print_summary(
    stats: dict, circuits: dict, metrics: str, usage: dict, answers: list[str]
) -> None:
    failed = [a for a in answers if a.startswith("error")]
    print("\n=== Sluice demo summary ===")
    print(f"calls: {len(answers)}  answered: {len(answers) - len(failed)}  failed: {len(failed)}")
    counters = {
        "llm_retries_total": 0.0,
        "llm_circuit_breaker_trips_total": 0.0,
        "llm_fallbacks_total": 0.0,
        "llm_timeout_warnings_total": 0.0,
    }
    for line in metrics.splitlines():
        for name in counters:
            if line.startswith(name + "{"):
                counters[name] += float(line.rsplit(" ", 1)[1])
    retries, trips, fallbacks, warnings = counters.values()
    print(
        f"retries: {retries:.0f}  breaker trips: {trips:.0f}  fallbacks: {fallbacks:.0f}"
        f"  timeout warnings: {warnings:.0f}"
    )
    totals = usage["totals"]
    print(
        f"tokens: {totals['inputTokens']} in, {totals['outputTokens']} out"
        f"  cost: ${totals['costUSD']} (bundled prices; the self-hosted provider is free)"
    )
    print(
        f"\n{'provider':<10}{'operation':<18}{'calls':>6}{'success':>9}{'retries':>9}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
    )
    for row in stats["calls"]:
        lat = row["latencyMs"]
        print(
            f"{row['provider']:<10}{row['operation']:<18}{row['count']:>6}"
            f"{row['successRate']:>9.0%}{row['averageRetries']:>9.2f}"
            f"{lat['p50']:>9.1f}{lat['p95']:>9.1f}{lat['p99']:>9.1f}"
        )
    print("\ncircuits:")
    for c in circuits["circuits"]:
        print(
            f"  {c['provider']}/{c['model']}: {c['state']} (trips {c['trips']},"
            f" failure rate {c['failureRate']:.0%})"
        )


async def main(calls: int, verbose: bool) -> None:
    token = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory() as secrets_dir:
        (Path(secrets_dir) / "openai-credentials").mkdir()
        (Path(secrets_dir) / "openai-credentials" / "apiKey").write_text("sk-demo-not-a-real-key")
        async with (
            SimulatedLLM(
                name="openai", latency_s=0.02, error_rate=0.15, seed=7, record=False
            ) as primary,
            SimulatedLLM(name="vllm", latency_s=0.04, record=False) as backup,
        ):
            process, data_port, admin_port = await start_sidecar(
                primary, backup, token, Path(secrets_dir)
            )
            logs = asyncio.create_task(relay_logs(process, verbose))
            try:
                async with openai.AsyncOpenAI(
                    base_url=f"http://127.0.0.1:{data_port}/v1", api_key="sk-app", max_retries=0
                ) as client:
                    print(f"\n--- phase 1: {calls} calls, the primary provider fails 15% of them")
                    answers = await workload(client, calls, 0)
                    print(f"\n--- phase 2: primary outage (every call 503), {calls} more calls")
                    primary.enqueue(*[Fail(503, message="upstream overloaded")] * 10_000)
                    answers += await workload(client, calls, calls)
                admin = f"http://127.0.0.1:{admin_port}"
                auth = {"Authorization": f"Bearer {token}"}
                async with aiohttp.ClientSession(headers=auth) as http:
                    stats = await (await http.get(admin + "/admin/stats")).json()
                    circuits = await (await http.get(admin + "/admin/circuits")).json()
                    metrics = await (await http.get(admin + "/metrics")).text()
                    usage = await (await http.get(admin + "/admin/usage")).json()
                print_summary(stats, circuits, metrics, usage, answers)
            finally:
                process.send_signal(signal.SIGTERM)
                await process.wait()
                logs.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=40, help="calls per phase")
    parser.add_argument("--verbose", action="store_true", help="show every sidecar log line")
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.verbose))
