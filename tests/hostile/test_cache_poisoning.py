"""A misbehaving upstream cannot poison the answer cache: only complete answers are replayed."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest
import pytest_asyncio

from tests.hostile.conftest import start_hostile_sidecar
from tests.support.hostile_upstream import BEHAVIOUR_HEADER, HostileUpstream
from tests.support.sidecar import SidecarHandle, close_test_sidecar

pytestmark = pytest.mark.asyncio(loop_scope="module")

CACHE = {"enabled": True, "ttlSeconds": 600}
BAD_STREAMS = ["html-200", "json-to-stream", "invalid-sse", "sse-bad-json", "stream-cut"]
BAD_ANSWERS = ["malformed-answer", "stream-cut", "html-200"]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cached(
    hostile: HostileUpstream, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SidecarHandle]:
    handle = await start_hostile_sidecar(hostile, tmp_path_factory.mktemp("secrets"), cache=CACHE)
    yield handle
    await close_test_sidecar(handle)


async def openai_stream(sidecar: SidecarHandle, question: str, behaviour: str) -> str:
    """The x-sluice-cache of one streamed chat call, read to its end (errors swallowed)."""
    headers = {BEHAVIOUR_HEADER: behaviour} if behaviour != "ok" else {}
    params: dict[str, Any] = {"model": "m", "temperature": 0, "stream": True}
    messages = [{"role": "user", "content": question}]
    async with openai.AsyncOpenAI(
        base_url=sidecar.openai_url, api_key="sk-app", max_retries=0
    ) as client:
        try:
            async with client.chat.completions.with_streaming_response.create(
                messages=messages, extra_headers=headers, **params
            ) as response:
                async for _line in response.iter_lines():
                    pass
                return response.headers.get("x-sluice-cache", "-")
        except openai.APIError:
            return "error"


@pytest.mark.parametrize("behaviour", BAD_STREAMS)
async def test_a_bad_openai_stream_is_never_replayed(
    cached: SidecarHandle, hostile: HostileUpstream, behaviour: str
) -> None:
    question = f"stream then {behaviour}"
    await openai_stream(cached, question, behaviour)
    sent = len(hostile.requests)
    assert await openai_stream(cached, question, "ok") == "miss"
    assert len(hostile.requests) == sent + 1  # the good call reached the upstream
    assert await openai_stream(cached, question, "ok") == "hit"  # and only it was stored


@pytest.mark.parametrize("behaviour", BAD_STREAMS)
async def test_a_bad_anthropic_stream_is_never_replayed(
    cached: SidecarHandle, hostile: HostileUpstream, behaviour: str
) -> None:
    params: dict[str, Any] = {
        "model": "m",
        "max_tokens": 5,
        "extra_body": {"temperature": 0},
        "messages": [{"role": "user", "content": f"anthropic stream then {behaviour}"}],
    }
    async with anthropic.AsyncAnthropic(
        base_url=cached.anthropic_url, api_key="sk-ant-app", max_retries=0
    ) as client:
        with pytest.raises(anthropic.APIError):
            async with client.messages.stream(
                **params, extra_headers={BEHAVIOUR_HEADER: behaviour}
            ) as stream:
                await stream.get_final_message()
        sent = len(hostile.requests)
        results = []
        for _ in range(2):
            async with client.messages.stream(**params) as stream:
                message = await stream.get_final_message()
            results.append((message.content[0].text, stream.response.headers["x-sluice-cache"]))
    assert results == [("fine", "miss"), ("fine", "hit")]
    assert len(hostile.requests) == sent + 1


@pytest.mark.parametrize("behaviour", BAD_ANSWERS)
async def test_a_bad_answer_is_never_replayed(
    cached: SidecarHandle, hostile: HostileUpstream, behaviour: str
) -> None:
    messages = [{"role": "user", "content": f"answer then {behaviour}"}]
    async with openai.AsyncOpenAI(
        base_url=cached.openai_url, api_key="sk-app", max_retries=0
    ) as client:
        with contextlib.suppress(openai.APIError):
            await client.chat.completions.with_raw_response.create(
                model="m",
                messages=messages,
                temperature=0,
                extra_headers={BEHAVIOUR_HEADER: behaviour},
            )
        sent = len(hostile.requests)
        raw = await client.chat.completions.with_raw_response.create(
            model="m", messages=messages, temperature=0
        )
    assert raw.headers["x-sluice-cache"] == "miss"
    assert raw.parse().choices[0].message.content == "fine"
    assert len(hostile.requests) == sent + 1
