"""Every answer says how long it took and how: elapsed time, warning state, Server-Timing."""

from __future__ import annotations

import re

import anthropic
import openai

from tests.support.sidecar import SidecarHandle, anthropic_provider_for, policy, provider_for
from tests.support.simulator import Delay, Fail, SimulatedLLM

MESSAGES = [{"role": "user", "content": "Describe the next scene"}]


def client(sidecar: SidecarHandle) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-app", max_retries=0)


def server_timing(header: str) -> dict[str, dict[str, str]]:
    """``queue;dur=1.2, cache;desc="off"`` -> {"queue": {"dur": "1.2"}, "cache": {"desc": "off"}}"""
    metrics = {}
    for part in header.split(","):
        name, *params = (piece.strip() for piece in part.split(";"))
        metrics[name] = {k: v.strip('"') for k, v in (p.split("=", 1) for p in params)}
    return metrics


async def test_answer_carries_elapsed_time_warning_state_and_server_timing(
    sidecar: SidecarHandle, llm: SimulatedLLM
) -> None:
    llm.enqueue(Fail(503), Delay(0.2))
    async with client(sidecar) as c:
        response = await c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES
        )
    headers = response.headers
    elapsed = int(headers["x-sluice-elapsed-ms"])
    assert elapsed >= 200
    assert headers["x-sluice-warning"] == "ok"
    timing = server_timing(headers["server-timing"])
    assert set(timing) == {"queue", "upstream", "cache", "total"}
    upstream = float(timing["upstream"]["dur"])
    assert 200 <= upstream <= float(timing["total"]["dur"])  # both attempts, the retry's delay
    assert float(timing["queue"]["dur"]) < upstream
    assert timing["cache"] == {"desc": "off"}
    assert abs(float(timing["total"]["dur"]) - elapsed) <= 1


async def test_answer_past_the_warning_point_says_slow(llm: SimulatedLLM, sidecar_factory) -> None:
    sidecar = await sidecar_factory(
        policy(
            providers=[provider_for(llm)],
            operations={"Pacing": {"timeoutSeconds": 2, "warningThreshold": 0.05}},
        )
    )
    llm.enqueue(Delay(0.15))
    async with client(sidecar) as c:
        response = await c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES, extra_headers={"X-LLM-Operation": "Pacing"}
        )
    assert response.headers["x-sluice-warning"] == "slow"


async def test_stream_headers_time_its_first_chunk(llm_factory, sidecar_factory) -> None:
    slow = await llm_factory(name="slow", latency_s=0.1, stream_chunk_delay_s=0.05, chunks=4)
    sidecar = await sidecar_factory(policy(providers=[anthropic_provider_for(slow, "claude")]))
    async with (
        anthropic.AsyncAnthropic(
            base_url=sidecar.anthropic_url, api_key="sk-ant-app", max_retries=0
        ) as c,
        c.messages.stream(model="claude-3-5-sonnet", max_tokens=50, messages=MESSAGES) as stream,
    ):
        headers = stream.response.headers
        text = await stream.get_final_text()
    assert text
    elapsed = int(headers["x-sluice-elapsed-ms"])
    assert 100 <= elapsed < 250  # the first chunk, not the whole stream (4 x 50 ms more)
    timing = server_timing(headers["server-timing"])
    assert float(timing["upstream"]["dur"]) >= 100


async def test_cache_hit_is_timed_as_cache_without_upstream(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(policy(providers=[provider_for(llm)], cache={"enabled": True}))
    async with client(sidecar) as c:
        first = await c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES, temperature=0
        )
        second = await c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES, temperature=0
        )
    assert server_timing(first.headers["server-timing"])["cache"] == {"desc": "miss"}
    timing = server_timing(second.headers["server-timing"])
    assert timing["cache"] == {"desc": "hit"}
    assert "upstream" not in timing and "queue" not in timing
    assert re.fullmatch(r"[0-9]+", second.headers["x-sluice-elapsed-ms"])


async def test_refused_call_still_says_how_long_it_took(sidecar: SidecarHandle) -> None:
    async with client(sidecar) as c:
        try:
            await c.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, extra_headers={"X-LLM-Operation": "Nope"}
            )
        except openai.BadRequestError as error:
            headers = error.response.headers
    assert headers["x-sluice-warning"] == "ok"
    assert int(headers["x-sluice-elapsed-ms"]) >= 0
    assert "total;dur=" in headers["server-timing"]
