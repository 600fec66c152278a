"""Masking credentials in text bound for a caller or a log (unit)."""

from __future__ import annotations

import pytest

from sluice_sidecar.observability.redaction import MASK, credential_values, redact, redact_bytes


@pytest.mark.parametrize(
    "text",
    [
        "headers=<CIMultiDictProxy('authorization': 'Bearer abcdefgh12345678', 'a': 'b')>",
        '{"x-api-key": "anthropic-secret-value", "other": 1}',
        "Proxy-Authorization: Basic dXNlcjpwYXNzd29yZA==\r\nHost: x",
        "cookie=session=abcdef0123456789; other=1",
        "Incorrect API key provided: sk-proj-abcdefghijklmnop",
        "GET https://example.test/v1/models?key=AIzaSyA-secret-value&alt=json",
        "api-key: azure0123456789abcdef",
    ],
)
def test_credentials_in_any_rendering_are_masked(text: str) -> None:
    masked = redact(text)
    assert MASK in masked
    for secret in (
        "abcdefgh12345678",
        "anthropic-secret-value",
        "dXNlcjpwYXNzd29yZA",
        "abcdef0123456789",
        "abcdefghijklmnop",
        "AIzaSyA-secret-value",
        "azure0123456789abcdef",
    ):
        assert secret not in masked


def test_text_without_credentials_is_unchanged() -> None:
    text = "upstream answered 503: service unavailable (attempt 2, model gpt-4o-mini)"
    assert redact(text) == text


def test_known_secret_values_are_masked_wherever_they_appear() -> None:
    secrets = credential_values({"Authorization": "Bearer opaque-key-42-xyz", "accept": "*/*"})
    assert secrets == ["Bearer opaque-key-42-xyz", "opaque-key-42-xyz"]
    assert redact("rejected opaque-key-42-xyz.", secrets) == f"rejected {MASK}."
    body = b'{"error": {"message": "bad key opaque-key-42-xyz"}}'
    assert redact_bytes(body, secrets) == b'{"error": {"message": "bad key [redacted]"}}'
    untouched = b'{"error": {"message": "quota"}}'
    assert redact_bytes(untouched, secrets) is untouched


def test_a_secret_that_is_not_utf8_text_is_masked_by_its_bytes() -> None:
    # aiohttp keeps undecodable header bytes as lone surrogates.
    secret = "sk-opaque-\udcff-key"
    body = b'{"error": "bad key sk-opaque-\xff-key"}'
    assert redact_bytes(body, [secret]) == b'{"error": "bad key [redacted]"}'
