"""Standalone mode: policies from a folder, reloaded on change, env overrides, the real CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest
import yaml

from sluice_sidecar.service.settings import ConfigOverrides
from tests.support.sidecar import close_test_sidecar, policy, provider_for, start_test_sidecar
from tests.support.simulator import SimulatedLLM

MESSAGES = [{"role": "user", "content": "hi"}]


def write_policy(directory: Path, name: str, document: dict) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


async def test_reloads_when_a_policy_file_changes(tmp_path: Path, llm_factory) -> None:
    first = await llm_factory(name="first")
    second = await llm_factory(name="second")
    write_policy(tmp_path, "policy", policy(providers=[provider_for(first, name="main")]))
    sidecar = await start_test_sidecar(policy_dir=tmp_path)
    try:
        version = sidecar.state.version
        assert version is not None
        changed = asyncio.create_task(sidecar.state.next_version())
        write_policy(tmp_path, "policy", policy(providers=[provider_for(second, name="main")]))
        async with asyncio.timeout(10):
            new_version = await changed
        assert new_version != version
        async with openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="k") as client:
            raw = await client.chat.completions.with_raw_response.create(
                model="m", messages=MESSAGES
            )
        assert raw.headers["x-sim-name"] == "second"
    finally:
        await close_test_sidecar(sidecar)


async def test_invalid_change_keeps_the_running_policy(
    tmp_path: Path, llm: SimulatedLLM, caplog: pytest.LogCaptureFixture
) -> None:
    write_policy(tmp_path, "policy", policy(providers=[provider_for(llm)]))
    sidecar = await start_test_sidecar(policy_dir=tmp_path)
    try:
        version = sidecar.state.version
        rejected = asyncio.Event()
        handler_emit = caplog.handler.emit

        def spy(record):  # the watcher logs the rejection: that is the event to await
            handler_emit(record)
            if "rejected" in record.getMessage():
                rejected.set()

        caplog.handler.emit = spy  # type: ignore[method-assign]
        (tmp_path / "policy.yaml").write_text(
            "apiVersion: sluice.dev/v1alpha1\nkind: LlmPolicy\nmetadata: {name: x}\n"
            "spec: {retry: {strategy: never}}\n"
        )
        async with asyncio.timeout(10):
            await rejected.wait()
        assert "retry.strategy" in caplog.text
        assert sidecar.state.version == version
    finally:
        await close_test_sidecar(sidecar)


async def test_environment_overrides(tmp_path: Path, llm_factory) -> None:
    cluster = await llm_factory(name="cluster")
    laptop = await llm_factory(name="laptop")
    write_policy(tmp_path, "policy", policy(providers=[provider_for(cluster, name="openai-main")]))
    overrides = ConfigOverrides(
        default_timeout_seconds=5,
        retry_max_attempts=2,
        provider_base_urls={"openai-main": laptop.openai_base_url},
    )
    sidecar = await start_test_sidecar(policy_dir=tmp_path, overrides=overrides, watch=False)
    try:
        config = sidecar.state.runtime.config
        assert config.defaults.timeout_seconds == 5 and config.retry.max_attempts == 2
        async with openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="k") as client:
            raw = await client.chat.completions.with_raw_response.create(
                model="m", messages=MESSAGES
            )
        assert raw.headers["x-sim-name"] == "laptop"
    finally:
        await close_test_sidecar(sidecar)


async def test_cli_serves_the_example_policies_and_stops_on_sigterm(
    tmp_path: Path, llm: SimulatedLLM
) -> None:
    """The real command line: serves the examples, exits 0 on SIGTERM (bench/ times the start)."""
    examples = Path(__file__).parents[2] / "examples" / "01-basic"
    env = os.environ | {
        "SLUICE_ADMIN_TOKEN": "t",
        "SLUICE_PROVIDER_BASE_URL_OPENAI": llm.openai_base_url,
        "SLUICE_PROVIDER_BASE_URL_ANTHROPIC": llm.anthropic_base_url,
        "SLUICE_DATA_PORT": "0",
        "SLUICE_ADMIN_PORT": "0",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sluice_sidecar",
        "--policy-dir",
        str(examples),
        env=env,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(30):
            while b"serving LLM API" not in (line := await process.stderr.readline()):
                assert line, "sidecar exited before serving"
        port = int(line.split(b"127.0.0.1:")[1].split(b",")[0])
        async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k") as c:
            completion = await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert completion.choices[0].message.content
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            code = await process.wait()
    assert code == 0
