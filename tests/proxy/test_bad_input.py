"""Bad input gets a clear error in the caller's format and never a traceback or a crash."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support.sidecar import policy, provider_for
from tests.support.simulator import SimulatedLLM


@pytest.fixture
async def small_sidecar(llm: SimulatedLLM, sidecar_factory):
    return await sidecar_factory(policy(providers=[provider_for(llm)]), max_body_bytes=4096)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'{"messages": []}', 400, "'model' is required"),
        (b'{"model": 5}', 400, "'model' is required"),
        (b'{"model": "m", "pad": "' + b"x" * 5000 + b'"}', 413, "exceeds"),
    ],
)
async def test_bad_openai_requests(small_sidecar, llm, body, status, needle) -> None:
    async with aiohttp.ClientSession() as http:
        url = small_sidecar.openai_url + "/chat/completions"
        async with http.post(url, data=body) as response:
            error = await response.json()
    assert response.status == status
    assert needle in error["error"]["message"]
    assert set(error["error"]) == {"message", "type", "param", "code"}
    assert llm.requests == []


async def test_bad_anthropic_request_in_anthropic_format(small_sidecar) -> None:
    url = small_sidecar.anthropic_url + "/v1/messages"
    async with aiohttp.ClientSession() as http, http.post(url, data=b"{") as response:
        error = await response.json()
    assert response.status == 400
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"


async def test_chunked_oversized_body_is_413(small_sidecar) -> None:
    async def body():
        for _ in range(10):
            yield b"x" * 1000

    async with aiohttp.ClientSession() as http:
        url = small_sidecar.openai_url + "/chat/completions"
        async with http.post(url, data=body()) as response:
            assert response.status == 413


async def test_unknown_path_is_404(small_sidecar) -> None:
    url = small_sidecar.openai_url + "/assistants"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        error = await response.json()
    assert response.status == 404 and "no route GET /v1/assistants" in error["error"]["message"]


async def test_sidecar_keeps_serving_after_bad_input(small_sidecar) -> None:
    async with aiohttp.ClientSession() as http:
        url = small_sidecar.openai_url + "/chat/completions"
        for garbage in (b"\xff\xfe", b"", b"null", b'{"model": "m", "stream": "yes"}'):
            async with http.post(url, data=garbage) as response:
                assert response.status in (200, 400)
        async with http.post(url, json={"model": "m", "messages": []}) as response:
            assert response.status == 200


async def test_an_internal_bug_answers_500_in_the_callers_format(
    small_sidecar, monkeypatch
) -> None:
    async def broken(call):
        raise RuntimeError("boom")

    monkeypatch.setattr(small_sidecar.state, "pipeline", broken)
    url = small_sidecar.openai_url + "/chat/completions"
    async with aiohttp.ClientSession() as http, http.post(url, json={"model": "m"}) as response:
        error = await response.json()
    assert response.status == 500
    assert error["error"]["message"] == "internal error in the Sluice sidecar; see its log"
    assert "boom" not in str(error)  # no internals leak to the caller
