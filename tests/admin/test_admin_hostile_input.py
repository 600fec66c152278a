"""Whatever a caller sends the admin port, the answer is a JSON 4xx, never a 500."""

from __future__ import annotations

import time

import pytest

from sluice_sidecar.economics.ledger import CallRecord
from tests.admin.raw_http import raw_request
from tests.support.sidecar import ADMIN_TOKEN, SidecarHandle

AUTH = b"Authorization: Bearer " + ADMIN_TOKEN.encode()
ESTIMATE = "/admin/estimate?provider=sim&operation=Completion&promptTokens="


async def admin_raw(sidecar: SidecarHandle, method: str, target: bytes, body: bytes = b""):
    head = f"{method} ".encode() + target + b" HTTP/1.1\r\nHost: x\r\n" + AUTH
    if body:
        head += f"\r\nContent-Length: {len(body)}".encode()
    return await raw_request(sidecar.running.admin_port, head, body)


@pytest.mark.parametrize(
    ("tokens", "why"),
    [
        ("9" * 400, "less than or equal to 100000000"),
        ("99999999999999999999", "less than or equal to 100000000"),
        ("-1", "greater than or equal to 0"),
        ("1e3", "valid integer"),
        ("", "valid integer"),
    ],
)
async def test_estimate_with_an_out_of_range_token_count_is_400_naming_it(
    sidecar: SidecarHandle, tokens: str, why: str
) -> None:
    status, body = await sidecar.admin("GET", ESTIMATE + tokens)
    assert status == 400
    [problem] = body["problems"]
    assert problem.startswith("promptTokens: ") and why in problem


async def test_estimate_names_every_missing_parameter(sidecar: SidecarHandle) -> None:
    status, body = await sidecar.admin("GET", "/admin/estimate")
    assert status == 400
    assert [p.split(":")[0] for p in body["problems"]] == ["provider", "operation", "promptTokens"]


async def test_estimate_at_the_largest_token_count_answers(sidecar: SidecarHandle) -> None:
    status, body = await sidecar.admin("GET", ESTIMATE + "100000000")
    assert status == 200 and body["promptTokens"] == 100_000_000 and body["estimatedMs"] > 0


@pytest.mark.parametrize(
    "target", [b"/admin/estimate?provider=%FF", b"/admin/circuits/reset?provider=%ED%A0%80"]
)
async def test_undecodable_query_values_are_400(sidecar: SidecarHandle, target: bytes) -> None:
    method = "POST" if b"reset" in target else "GET"
    status, body = await admin_raw(sidecar, method, target)
    assert status == 400 and body["problems"][0].startswith("provider: ")  # type: ignore[index]


async def test_circuit_reset_with_an_overlong_model_is_400(sidecar: SidecarHandle) -> None:
    status, body = await sidecar.admin("POST", "/admin/circuits/reset?model=" + "m" * 513)
    assert status == 400 and body["problems"][0].startswith("model: ")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("DELETE", "/admin/config", 405),
        ("GET", "/admin/nothing", 404),
        ("POST", "/admin/stats", 405),
    ],
)
async def test_aiohttp_refusals_are_json_errors(
    sidecar: SidecarHandle, method: str, path: str, status: int
) -> None:
    async with sidecar.http.request(
        method, sidecar.admin_url + path, headers=sidecar.auth
    ) as answer:
        assert answer.status == status
        assert answer.content_type == "application/json"
        assert (await answer.json())["error"]
        if status == 405:
            assert "GET" in answer.headers["allow"]


@pytest.mark.parametrize("path", ["/admin/config", "/admin/budgets/external"])
async def test_a_body_over_the_admin_limit_is_413_json(sidecar: SidecarHandle, path: str) -> None:
    status, body = await sidecar.admin("PUT", path, data=b" " * (1024 * 1024 + 1))
    assert status == 413 and "1048576" in body["error"]


@pytest.mark.parametrize(
    "body", [b"[]", b'"x"', b"\xff\xfe", b"[" * 5000, b'{"a":' * 2000 + b"1" + b"}" * 2000]
)
async def test_config_bodies_that_are_not_a_config_object_are_400(
    sidecar: SidecarHandle, body: bytes
) -> None:
    status, answer = await admin_raw(sidecar, "PUT", b"/admin/config", body)
    assert status == 400 and answer["error"] == "invalid configuration"  # type: ignore[index]


async def test_session_ids_with_odd_characters_are_404(sidecar: SidecarHandle) -> None:
    for target in (b"/admin/sessions/%FF", b"/admin/sessions/%ED%A0%80", b"/admin/sessions/a%00b"):
        status, body = await admin_raw(sidecar, "GET", target)
        assert status == 404 and "no calls recorded" in body["error"]  # type: ignore[index]


async def test_a_session_named_by_undecodable_header_bytes_is_listed_escaped(
    sidecar: SidecarHandle,
) -> None:
    # The proxy now refuses such header values; a record that still carries one (as aiohttp
    # decodes it: surrogateescape) must not make the admin answers fail.
    record = CallRecord(
        at=time.time(), session="job-\udcff\udcfe", operation="Completion", provider="sim",
        model="m", usage=None, cost=None, estimated_cost=None, cache="off", saved=None,
        latency_ms=1.0, retries=0, status=200,
    )  # fmt: skip
    sidecar.state.sessions.record(record)
    status, listing = await sidecar.admin("GET", "/admin/sessions")
    assert status == 200
    assert [row["session"] for row in listing["sessions"]] == ["job-\\xff\\xfe"]
