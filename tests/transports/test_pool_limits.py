"""More concurrent streams than any limit: each is served or refused at once, never queued.

The upstream holds every stream open after its first event, so a stream queued behind the
transport's connection limit or the bulkhead would never start while the others are held:
the test would time out instead of seeing every outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.sidecar import (
    SidecarHandle,
    close_test_sidecar,
    compile_policy,
    policy,
    start_test_sidecar,
)
from tests.transports.held_upstream import HeldUpstream

PER_API = 5
OUTCOMES_WITHIN_S = 10.0  # far more than a refusal or a first event takes; a queued one never comes


@pytest.fixture
async def upstream() -> AsyncIterator[HeldUpstream]:
    held = HeldUpstream()
    await held.start()
    yield held
    await held.close()


async def sidecar_before(
    upstream: HeldUpstream, breaker: dict[str, Any], **settings: Any
) -> SidecarHandle:
    document = policy(
        providers=[
            {"name": "chat", "type": "openai-compatible", "baseUrl": upstream.url + "/v1"},
            {"name": "claude", "type": "anthropic", "baseUrl": upstream.url},
        ],
        circuitBreaker=breaker,
    )
    return await start_test_sidecar(compile_policy(document), **settings)


async def open_openai(sidecar: SidecarHandle) -> tuple[str, Any]:
    client = openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-test", max_retries=0)
    try:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    except openai.APIStatusError as error:
        assert error.status_code == 503 and error.code == "concurrency_limit", error.body
        assert float(error.response.headers["retry-after"]) > 0
        return "refused", None
    first = await stream.__anext__()
    assert first.choices[0].delta.content == "hi"
    return "served", stream


async def open_anthropic(sidecar: SidecarHandle) -> tuple[str, Any]:
    client = anthropic.AsyncAnthropic(
        base_url=sidecar.anthropic_url, api_key="sk-test", max_retries=0
    )
    try:
        stream = await client.messages.create(
            model="claude-3-5-haiku-latest",
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
    except anthropic.APIStatusError as error:
        assert error.status_code == 503, error.body
        assert error.body["error"]["type"] == "overloaded_error"
        assert float(error.response.headers["retry-after"]) > 0
        return "refused", None
    first = await stream.__anext__()
    assert first.type == "message_start"
    return "served", stream


async def refusals_counted(sidecar: SidecarHandle) -> float:
    """The refusals in ``llm_errors_by_type_total`` (class ``refused``), over every model."""
    families = text_string_to_metric_families(await sidecar.metrics_text())
    return sum(
        sample.value
        for family in families
        if family.name == "llm_errors_by_type"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("class") == "refused"
    )


async def finish(stream: Any) -> None:
    async for _ in stream:
        pass


@pytest.mark.parametrize(
    ("breaker", "settings", "served"),
    [
        ({}, {"upstream_connection_limit": 4}, 4),  # the transport's limit, across providers
        ({"maxConcurrent": 3}, {}, 6),  # the bulkhead: 3 per provider and model
    ],
    ids=["connection-limit", "bulkhead"],
)
async def test_streams_past_a_limit_are_served_or_refused_at_once(
    upstream: HeldUpstream, breaker: dict[str, Any], settings: dict[str, Any], served: int
) -> None:
    sidecar = await sidecar_before(upstream, breaker, **settings)
    try:
        openings = [open_openai(sidecar) for _ in range(PER_API)]
        openings += [open_anthropic(sidecar) for _ in range(PER_API)]
        outcomes = await asyncio.wait_for(asyncio.gather(*openings), OUTCOMES_WITHIN_S)
        kinds = [kind for kind, _ in outcomes]
        assert kinds.count("served") == served and upstream.open_streams == served
        assert kinds.count("refused") == 2 * PER_API - served
        assert await refusals_counted(sidecar) == 2 * PER_API - served

        upstream.release.set()
        await asyncio.gather(*(finish(stream) for _, stream in outcomes if stream is not None))
        # The slots came back with the ended streams: the next one is served.
        kind, stream = await asyncio.wait_for(open_openai(sidecar), OUTCOMES_WITHIN_S)
        assert kind == "served"
        await finish(stream)
    finally:
        await close_test_sidecar(sidecar)


async def first_event(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    response = await http.post(url, json=body, headers={"Authorization": "Bearer sk-test"})
    assert response.status == 200, await response.text()
    assert (await response.content.readuntil(b"\n\n")).startswith(b"data: ")
    return response


async def test_the_defaults_serve_many_concurrent_streams_to_one_model(
    upstream: HeldUpstream,
) -> None:
    """Streams hold their slot for their whole length: the defaults are sized for that."""
    sidecar = await sidecar_before(upstream, {})
    streams = 250  # past the 100 the bulkhead used to allow per provider and model
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            url = sidecar.openai_url + "/chat/completions"
            openings = [first_event(http, url) for _ in range(streams)]
            responses = await asyncio.wait_for(asyncio.gather(*openings), OUTCOMES_WITHIN_S)
            assert upstream.open_streams == streams
            upstream.release.set()
            for response in responses:
                assert (await response.read()).endswith(b"data: [DONE]\n\n")
    finally:
        await close_test_sidecar(sidecar)
