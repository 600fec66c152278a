"""The upstream answer bounds set in the sidecar's settings reach its transport."""

from __future__ import annotations

import aiohttp

from tests.support.sidecar import policy, provider_for

INPUTS = [f"text number {index}" for index in range(50)]


async def test_max_answer_bytes_setting_refuses_a_larger_answer_with_502(
    llm, sidecar_factory
) -> None:
    document = policy(providers=[provider_for(llm)], retry={"maxAttempts": 1})
    small = await sidecar_factory(document, max_answer_bytes=1024)
    default = await sidecar_factory(document)
    body = {"model": "text-embedding-3-small", "input": INPUTS}
    async with aiohttp.ClientSession() as http:
        async with http.post(default.openai_url + "/embeddings", json=body) as response:
            assert response.status == 200 and len(await response.read()) > 1024
        async with http.post(small.openai_url + "/embeddings", json=body) as response:
            error = await response.json()
    assert response.status == 502
    assert "1024" in error["error"]["message"]


async def test_stream_idle_timeout_setting_breaks_a_silent_stream(llm_factory, sidecar_factory):
    slow = await llm_factory(name="slow", stream_chunk_delay_s=1.0)
    document = policy(providers=[provider_for(slow)], retry={"maxAttempts": 1})
    sidecar = await sidecar_factory(document, stream_idle_timeout_s=0.1)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with (
        aiohttp.ClientSession() as http,
        http.post(sidecar.openai_url + "/chat/completions", json=body) as response,
    ):
        text = await response.text()
    assert '"error"' in text and "[DONE]" not in text
