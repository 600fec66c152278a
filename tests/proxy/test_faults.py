"""Fault scenarios: retries, Retry-After, breaker and fallback, timeouts, disconnects, garbage."""

from __future__ import annotations

import asyncio
import logging
import re

import openai
import pytest

from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import BreakStream, Fail, Garbage, Hang, SimulatedLLM
from tests.support.waiting import wait_until

MESSAGES = [{"role": "user", "content": "Summarise the scene"}]


def client(sidecar: SidecarHandle, **kwargs: object) -> openai.AsyncOpenAI:
    kwargs.setdefault("max_retries", 0)  # the sidecar retries; the SDK must not hide it
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-app", **kwargs)  # type: ignore[arg-type]


async def test_rate_limit_retry_honours_retry_after(
    sidecar: SidecarHandle, llm: SimulatedLLM, caplog: pytest.LogCaptureFixture
) -> None:
    llm.enqueue(Fail(429, retry_after=0.3))
    caplog.set_level(logging.WARNING, "sluice.retry")
    async with client(sidecar) as c:
        response = await c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES, extra_headers={"X-LLM-Operation": "Scripting"}
        )
    assert response.headers["x-sluice-attempts"] == "2"
    first, second = llm.requests
    assert second.received_at - first.received_at >= 0.3
    assert (
        "sim Scripting retry 1/3 due to rate limit exceeded. Waiting 300ms before retry"
        in caplog.text
    )
    assert (
        'llm_retries_total{provider="sim",reason="rate_limit_exceeded",strategy="exponential"} 1.0'
        in (await sidecar.metrics_text())
    )


async def test_transient_errors_retried_until_success(
    sidecar: SidecarHandle, llm: SimulatedLLM
) -> None:
    llm.enqueue(Fail(503), Fail(502), Fail(500))
    async with client(sidecar) as c:
        completion = await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert completion.choices[0].message.content
    assert len(llm.requests) == 4


async def test_exhausted_retries_relay_the_provider_error(
    sidecar: SidecarHandle, llm: SimulatedLLM
) -> None:
    llm.enqueue(*[Fail(429, message="slow down", retry_after=0.01)] * 4)
    async with client(sidecar) as c:
        with pytest.raises(openai.RateLimitError, match="slow down") as caught:
            await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert caught.value.response.headers.get("retry-after")
    assert len(llm.requests) == 4  # maxAttempts defaults to 4: the first and three retries


async def test_permanent_error_not_retried(sidecar: SidecarHandle, llm: SimulatedLLM) -> None:
    llm.enqueue(Fail(401, message="Incorrect API key provided"))
    async with client(sidecar) as c:
        with pytest.raises(openai.AuthenticationError, match="Incorrect API key"):
            await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert len(llm.requests) == 1


async def test_503_storm_opens_breaker_and_falls_back_then_recovers(
    llm_factory, sidecar_factory
) -> None:
    primary = await llm_factory(name="primary")
    backup = await llm_factory(name="backup")
    sidecar = await sidecar_factory(
        policy(
            providers=[provider_for(primary), provider_for(backup)],
            retry={"maxAttempts": 1},
            circuitBreaker={"failureThreshold": 3, "successThreshold": 2, "openSeconds": 30},
        )
    )
    primary.enqueue(*[Fail(503)] * 3)
    async with client(sidecar) as c:
        served_by = []
        for _ in range(5):
            raw = await c.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
            served_by.append(raw.headers["x-sim-name"])
        assert served_by == ["backup"] * 5
        assert len(primary.requests) == 3  # open circuit: calls 4 and 5 never reached it
        _, circuits = await sidecar.admin("GET", "/admin/circuits")
        state = {c["provider"]: c["state"] for c in circuits["circuits"]}
        assert state["primary"] == "open"
        metrics = await sidecar.metrics_text()
        assert 'llm_circuit_breaker_trips_total{model="m",provider="primary"} 1.0' in metrics
        assert 'llm_circuit_breaker_state{model="m",provider="primary"} 2.0' in metrics

        sidecar.clock.advance(30)  # the open time passes: half-open, trial calls go to primary
        for _ in range(2):
            raw = await c.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
            assert raw.headers["x-sim-name"] == "primary"
    _, circuits = await sidecar.admin("GET", "/admin/circuits")
    assert {c["provider"]: c["state"] for c in circuits["circuits"]}["primary"] == "closed"
    metrics = await sidecar.metrics_text()
    for left, entered in (("closed", "open"), ("open", "half_open"), ("half_open", "closed")):
        assert (
            "llm_circuit_breaker_state_changes_total{"
            f'from_state="{left}",model="m",provider="primary",to_state="{entered}"}} 1.0'
        ) in metrics


async def test_reset_call_closes_an_open_circuit(llm: SimulatedLLM, sidecar_factory) -> None:
    sidecar = await sidecar_factory(
        policy(
            providers=[provider_for(llm)],
            retry={"maxAttempts": 1},
            circuitBreaker={"failureThreshold": 1},
        )
    )
    llm.enqueue(Fail(500))
    async with client(sidecar) as c:
        with pytest.raises(openai.InternalServerError):
            await c.chat.completions.create(model="m", messages=MESSAGES)
        with pytest.raises(openai.InternalServerError, match="circuit for sim/m is open") as caught:
            await c.chat.completions.create(model="m", messages=MESSAGES)
        assert caught.value.status_code == 503
        assert int(caught.value.response.headers["retry-after"]) >= 1
        status, body = await sidecar.admin("POST", "/admin/circuits/reset?provider=sim")
        assert (status, body) == (200, {"reset": 1})
        assert await c.chat.completions.create(model="m", messages=MESSAGES)


async def test_bulkhead_full_answers_503_at_once(llm: SimulatedLLM, sidecar_factory) -> None:
    sidecar = await sidecar_factory(
        policy(providers=[provider_for(llm)], circuitBreaker={"maxConcurrent": 1})
    )
    llm.enqueue(Hang())
    async with client(sidecar) as c:
        hanging = asyncio.create_task(c.chat.completions.create(model="m", messages=MESSAGES))
        await wait_until(lambda: llm.in_flight == 1)
        with pytest.raises(openai.InternalServerError, match="already in flight") as caught:
            await c.chat.completions.create(model="m", messages=MESSAGES)
        assert caught.value.status_code == 503 and caught.value.response.headers["retry-after"]
        hanging.cancel()
        await llm.disconnected.wait()


async def test_timeout_warns_then_answers_504(
    llm: SimulatedLLM, sidecar_factory, caplog: pytest.LogCaptureFixture
) -> None:
    sidecar = await sidecar_factory(
        policy(
            providers=[provider_for(llm)],
            operations={"SceneImportance": {"timeoutSeconds": 0.4, "warningThreshold": 0.5}},
        )
    )
    llm.enqueue(Hang())
    caplog.set_level(logging.WARNING, "sluice.proxy")
    async with client(sidecar) as c:
        with pytest.raises(openai.APIStatusError, match="SceneImportance timed out") as caught:
            await c.chat.completions.create(
                model="m", messages=MESSAGES, extra_headers={"X-LLM-Operation": "SceneImportance"}
            )
    assert caught.value.status_code == 504
    assert re.search(
        r"SceneImportance is taking longer than usual \(0\.2s / 0\.4s, 5\d%\)", caplog.text
    )
    assert 'llm_timeout_warnings_total{operation="SceneImportance"} 1.0' in (
        await sidecar.metrics_text()
    )
    await llm.disconnected.wait()  # the deadline also cancelled the upstream call


async def test_no_retry_that_would_pass_the_deadline(llm: SimulatedLLM, sidecar_factory) -> None:
    sidecar = await sidecar_factory(
        policy(providers=[provider_for(llm)], defaults={"timeoutSeconds": 1})
    )
    llm.enqueue(Fail(503, retry_after=5))
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with client(sidecar) as c:
        with pytest.raises(openai.InternalServerError):
            await c.chat.completions.create(model="m", messages=MESSAGES)
    assert loop.time() - started < 1  # answered at once, not after waiting out the deadline
    assert len(llm.requests) == 1


async def test_client_disconnect_mid_stream_cancels_upstream(llm_factory, sidecar_factory) -> None:
    slow = await llm_factory(name="slow", stream_chunk_delay_s=0.05, chunks=200)
    sidecar = await sidecar_factory(policy(providers=[provider_for(slow)]))
    async with client(sidecar) as c:
        stream = await c.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        received = 0
        async for _chunk in stream:
            received += 1
            if received == 3:
                break
        await stream.close()
    async with asyncio.timeout(5):
        await slow.disconnected.wait()
    assert slow.disconnects == 1


async def test_client_disconnect_while_waiting_cancels_upstream(
    sidecar: SidecarHandle, llm: SimulatedLLM
) -> None:
    llm.enqueue(Hang())
    async with client(sidecar) as c:
        task = asyncio.create_task(c.chat.completions.create(model="m", messages=MESSAGES))
        await wait_until(lambda: llm.in_flight == 1)
        task.cancel()
    async with asyncio.timeout(5):
        await llm.disconnected.wait()


async def test_upstream_garbage_is_502_with_clear_message(
    sidecar: SidecarHandle, llm: SimulatedLLM
) -> None:
    llm.enqueue(*[Garbage()] * 4)
    async with client(sidecar) as c:
        with pytest.raises(openai.InternalServerError, match="not valid JSON") as caught:
            await c.chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.status_code == 502


async def test_stream_failing_before_its_first_byte_is_retried(
    sidecar: SidecarHandle, llm: SimulatedLLM
) -> None:
    llm.enqueue(Fail(503), Garbage(status=502))
    async with client(sidecar) as c:
        stream = await c.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        text = "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])
    assert text.startswith("Simulated answer")
    assert len(llm.requests) == 3


async def test_stream_broken_mid_way_is_not_retried_and_ends_with_error(
    sidecar: SidecarHandle, llm: SimulatedLLM
) -> None:
    llm.enqueue(BreakStream(after_chunks=2))
    async with client(sidecar) as c:
        stream = await c.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError, match="stream broke"):
            async for _chunk in stream:
                pass
    assert len(llm.requests) == 1
