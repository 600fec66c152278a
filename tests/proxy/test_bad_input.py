"""Bad input gets a clear error in the caller's format and never a traceback or a crash."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from tests.economics.conftest import budget, economics_sidecar
from tests.support.sidecar import policy, provider_for
from tests.support.waiting import wait_until

__all__ = ["economics_sidecar"]
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


ROUTES = [
    ("openai", "/v1/chat/completions"),
    ("openai", "/v1/completions"),
    ("openai", "/v1/embeddings"),
    ("anthropic", "/v1/messages"),
]


def _nested(depth: int) -> bytes:
    return b'{"model": "m", "messages": [], "x": ' + b"[" * depth + b"]" * depth + b"}"


def _assert_callers_format(api: str, error: dict) -> None:
    if api == "anthropic":
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    else:
        assert error["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("depth", [300, 2000])
@pytest.mark.parametrize(("api", "path"), ROUTES)
async def test_deeply_nested_json_is_refused_with_400(sidecar, llm, api, path, depth) -> None:
    async with aiohttp.ClientSession() as http:
        url = sidecar.anthropic_url + path
        async with http.post(url, data=_nested(depth)) as response:
            error = await response.json()
    assert response.status == 400
    _assert_callers_format(api, error)
    assert "nesting" in str(error)
    assert llm.requests == []


async def test_json_within_the_nesting_limit_is_proxied(sidecar, llm) -> None:
    async with aiohttp.ClientSession() as http:
        url = sidecar.openai_url + "/chat/completions"
        async with http.post(url, data=_nested(40)) as response:
            assert response.status == 200


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1])


async def test_a_100kb_model_name_is_refused_and_memory_does_not_grow(sidecar, llm) -> None:
    body = {"model": "m" * 100_000, "messages": [{"role": "user", "content": "hi"}]}
    url = sidecar.openai_url + "/chat/completions"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body) as response:
            error = await response.json()
        assert response.status == 400 and "256" in error["error"]["message"]
        before = _rss_kib()
        for index in range(300):
            body["model"] = f"{index:06d}" + "m" * 100_000
            async with http.post(url, json=body) as response:
                assert response.status == 400
        grown = _rss_kib() - before
    assert llm.requests == []
    assert grown < 15_000, f"RSS grew by {grown} KiB over 300 calls with 100 KB model names"


@pytest.mark.parametrize("header", ["X-LLM-Session", "X-LLM-Operation", "X-LLM-Priority"])
async def test_overlong_sidecar_header_is_refused_with_400(sidecar, llm, header) -> None:
    url = sidecar.anthropic_url + "/v1/messages"
    body = {"model": "claude", "max_tokens": 5, "messages": []}
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, json=body, headers={header: "s" * 5000}) as response,
    ):
        error = await response.json()
    assert response.status == 400
    _assert_callers_format("anthropic", error)
    message = error["error"]["message"]
    assert header.lower() in message.lower() and len(message) < 500  # the value is not echoed
    assert llm.requests == []
    metrics = await sidecar.metrics_text()
    assert 'sluice_limits_hit_total{limit="header_length"} 1.0' in metrics


async def _raw_post(port: int, path: str, body: bytes, extra_headers: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: sidecar\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\n"
        + extra_headers
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


async def test_non_utf8_session_header_is_refused_and_budget_state_keeps_being_saved(
    llm, economics_sidecar, tmp_path
) -> None:
    document = policy(
        providers=[provider_for(llm)], pricing={"m": {"inputPer1M": 1, "outputPer1M": 1}}
    )
    sidecar = await economics_sidecar(
        document, [budget(limits={"costUSD": 100})], state_dir=tmp_path
    )
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    for value in (b"caf\xe9", b"\xff\xfe"):
        answer = await _raw_post(
            sidecar.running.data_port,
            "/v1/chat/completions",
            body,
            b"X-LLM-Session: " + value + b"\r\n",
        )
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), head
        assert orjson.loads(payload)["error"]["code"] == "header_chars_exceeded"
    answer = await _raw_post(
        sidecar.running.data_port, "/v1/chat/completions", body, b"X-LLM-Session: job-1\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200")
    status, sessions = await sidecar.admin("GET", "/admin/sessions")
    assert status == 200 and [s["session"] for s in sessions["sessions"]] == ["job-1"]
    saved = tmp_path / "budgets.json"
    await wait_until(lambda: saved.exists() and b"tests/team" in saved.read_bytes())


@pytest.mark.parametrize("header", [b"anthropic-beta: caf\xe9", b"openai-beta: \xff\xfe"])
async def test_non_utf8_headers_in_the_cache_key_are_served_and_cached(
    llm, sidecar_factory, header
):
    document = policy(providers=[provider_for(llm)], cache={"enabled": True})
    sidecar = await sidecar_factory(document)
    body = b'{"model": "m", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]}'
    answers = [
        await _raw_post(sidecar.running.data_port, "/v1/chat/completions", body, header + b"\r\n")
        for _ in range(2)
    ]
    assert [answer[:15] for answer in answers] == [b"HTTP/1.1 200 OK"] * 2
    assert b"x-sluice-cache: hit" in answers[1]
    assert len(llm.requests) == 1


async def test_a_request_aiohttp_cannot_parse_gets_a_json_400_and_is_counted(sidecar) -> None:
    body = b'{"model": "m", "messages": []}'
    answer = await _raw_post(
        sidecar.running.data_port, "/v1/messages", body, b"X-LLM-Session: a\x01b\r\n"
    )
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].endswith(b" 400 Bad Request") and b"application/json" in head
    error = orjson.loads(payload)["error"]
    assert error["code"] == "malformed_http" and "Invalid header value char" in error["message"]
    assert "a\x01b" not in error["message"]  # the offending line is not echoed
    metrics = await sidecar.metrics_text()
    assert 'sluice_limits_hit_total{limit="http_parse"} 1.0' in metrics


@pytest.mark.parametrize("header", [b"Authorization: Bearer caf\xe9", b"x-api-key: sk-\xff"])
async def test_credentials_that_are_not_utf8_text_are_refused_with_400(sidecar, llm, header):
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    answer = await _raw_post(
        sidecar.running.data_port, "/v1/chat/completions", body, header + b"\r\n"
    )
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    error = orjson.loads(payload)["error"]
    assert error["code"] == "header_chars_exceeded" and "printable" in error["message"]
    assert llm.requests == []
