"""The admin token check holds for any bytes a caller puts in ``Authorization``."""

from __future__ import annotations

import pytest

from tests.admin.raw_http import raw_request
from tests.support.sidecar import ADMIN_TOKEN, SidecarHandle

TOKEN = ADMIN_TOKEN.encode()


@pytest.mark.parametrize(
    "authorization",
    [
        b"Bearer \xff\xfe",  # not UTF-8
        b"Bearer " + TOKEN + b"\xe9",  # the token, then a latin-1 byte
        b"\xc3\xa9" * 50,  # UTF-8, not ASCII
        b"Bearer " + TOKEN[:-1] + b"\x80",
    ],
)
async def test_non_ascii_authorization_is_refused_with_401(
    sidecar: SidecarHandle, authorization: bytes
) -> None:
    head = b"GET /admin/stats HTTP/1.1\r\nHost: x\r\nAuthorization: " + authorization
    status, body = await raw_request(sidecar.running.admin_port, head)
    assert status == 401
    assert body == {"error": "missing or wrong admin bearer token"}


async def test_the_right_token_over_a_raw_socket_is_accepted(sidecar: SidecarHandle) -> None:
    head = b"GET /admin/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN
    status, body = await raw_request(sidecar.running.admin_port, head)
    assert status == 200 and "calls" in body  # type: ignore[operator]


@pytest.mark.parametrize(
    "target",
    [
        b"//admin/config",
        b"/%61dmin/config",
        b"/healthz/../admin/config",
        b"/./admin/config",
        b"/admin/./config",
        b"/admin//config",
        b"/admin%2Fconfig",
        b"http://x/admin/config",
        b"/ADMIN/config",
        b"/admin\\config",
    ],
)
async def test_no_spelling_of_an_admin_path_gets_past_the_token(
    sidecar: SidecarHandle, target: bytes
) -> None:
    status, body = await raw_request(
        sidecar.running.admin_port, b"GET " + target + b" HTTP/1.1\r\nHost: x"
    )
    assert status in (401, 404), body
