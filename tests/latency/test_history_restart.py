"""Latency history survives a restart through the state directory."""

from __future__ import annotations

from pathlib import Path

import openai

from tests.support.sidecar import (
    close_test_sidecar,
    compile_policy,
    policy,
    provider_for,
    start_test_sidecar,
)
from tests.support.simulator import SimulatedLLM

MESSAGES = [{"role": "user", "content": "Draft the intro"}]


async def estimate(handle, provider: str) -> dict:
    status, body = await handle.admin(
        "GET", f"/admin/estimate?provider={provider}&operation=Completion&promptTokens=20"
    )
    assert status == 200
    return body


async def test_predictions_survive_a_restart(llm: SimulatedLLM, tmp_path: Path) -> None:
    config = compile_policy(policy(providers=[provider_for(llm)]))
    first = await start_test_sidecar(config, state_dir=tmp_path)
    try:
        async with openai.AsyncOpenAI(
            base_url=first.openai_url, api_key="sk-app", max_retries=0
        ) as c:
            for _ in range(3):
                await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        before = await estimate(first, "sim")
    finally:
        await close_test_sidecar(first)
    assert before["points"] == 3
    assert (tmp_path / "latency.json").is_file()
    second = await start_test_sidecar(config, state_dir=tmp_path)
    try:
        after = await estimate(second, "sim")
    finally:
        await close_test_sidecar(second)
    assert after == before


async def test_a_damaged_history_file_is_ignored(llm: SimulatedLLM, tmp_path: Path) -> None:
    (tmp_path / "latency.json").write_bytes(b'{"version": 1, "series": [{"provider": 5}], ')
    config = compile_policy(policy(providers=[provider_for(llm)]))
    handle = await start_test_sidecar(config, state_dir=tmp_path)
    try:
        body = await estimate(handle, "sim")
    finally:
        await close_test_sidecar(handle)
    assert body["points"] == 0
