"""Odd Retry-After values from a provider: a prompt answer in the caller's format, timers intact."""

from __future__ import annotations

import asyncio

import anthropic
import openai
import pytest

from tests.hostile.conftest import DEADLINE_S, MESSAGES, sdk_call
from tests.support.hostile_upstream import RETRY_AFTER_VALUES, HostileUpstream
from tests.support.sidecar import SidecarHandle

pytestmark = pytest.mark.asyncio(loop_scope="module")

TIMER_S = 0.05
TIMER_SLACK_S = 0.15  # generous for a busy machine, far below the seconds a broken heap costs


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("status", ["429", "503"])
@pytest.mark.parametrize("value", sorted(RETRY_AFTER_VALUES))
async def test_odd_retry_after_answers_the_provider_status_within_the_deadline(
    hostile_sidecar: SidecarHandle, api: str, status: str, value: str
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises((openai.APIStatusError, anthropic.APIStatusError)) as caught:
        await sdk_call(hostile_sidecar, api, f"{status}-retry-after-{value}")
    assert loop.time() - started < DEADLINE_S
    assert caught.value.status_code == int(status)
    body = caught.value.response.json()
    assert body["type"] == "error" if api == "anthropic" else body["error"]["message"]
    wait = caught.value.response.headers.get("retry-after")
    assert wait is None or 0 <= int(wait) <= 60

    # The event loop's timers still fire on time after whatever the sidecar slept. A broken
    # timer heap makes every sleep late; a busy machine only some: the best of three counts.
    assert min([await _timer_lateness(loop) for _ in range(3)]) < TIMER_SLACK_S


async def _timer_lateness(loop: asyncio.AbstractEventLoop) -> float:
    before = loop.time()
    await asyncio.sleep(TIMER_S)
    return loop.time() - before - TIMER_S


async def test_an_unusable_retry_after_falls_back_to_the_schedule_and_the_retry_succeeds(
    hostile_sidecar: SidecarHandle, hostile: HostileUpstream
) -> None:
    hostile.enqueue("503-retry-after-nan")  # then "ok", once the queue is empty
    sent = len(hostile.requests)
    async with openai.AsyncOpenAI(
        base_url=hostile_sidecar.openai_url, api_key="sk-app", max_retries=0
    ) as client:
        raw = await client.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "fine"
    assert raw.headers["x-sluice-attempts"] == "2"
    assert len(hostile.requests) == sent + 2
