"""Mask credentials in text that may reach a caller or a log.

The sidecar holds the provider keys, and text built from upstream failures (client exceptions,
provider error bodies) can carry them: an aiohttp ``ClientResponseError`` repr includes the
request headers, and some providers quote the key they rejected. Whatever the transports and
the fallback stage put into an error message or a log line passes through ``redact`` first.
It masks credential headers in any common rendering (``name: value``, ``'name': 'value'``,
``name=value``), bearer tokens, ``sk-…``-looking keys, and the exact secret values given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MASK = "[redacted]"

# Request and answer headers whose values are credentials, lower case.
CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "ocp-apim-subscription-key",
        "cookie",
        "set-cookie",
    }
)
# Secrets shorter than this are not searched for verbatim: masking "ab" everywhere would garble
# messages, and a key that short is no key.
MIN_SECRET_LENGTH = 8

_NAMES = "|".join(sorted((re.escape(name) for name in CREDENTIAL_HEADERS), key=len, reverse=True))
# The header name (optionally quoted), its separator, then the value up to a quote, a comma
# between rendered headers, a line end or the end of a rendered mapping.
_HEADER = re.compile(
    rf"(?i)(?<![\w-])(['\"]?(?:{_NAMES})['\"]?\s*[:=]\s*)(['\"]?)([^'\"\r\n,>)}}]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}")
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_-]{6,}")
_QUERY_KEY = re.compile(r"(?i)([?&](?:api[_-]?key|key|token|access_token)=)[^&#\s'\"]+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every credential it shows replaced by ``MASK``."""
    for secret in secrets:
        if len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, MASK)
    text = _HEADER.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m[1]} {MASK}", text)
    text = _KEY_LIKE.sub(MASK, text)
    return _QUERY_KEY.sub(lambda m: f"{m[1]}{MASK}", text)


def credential_values(headers: Mapping[str, str]) -> list[str]:
    """The secret parts of a request's credential headers (a bearer token without "Bearer")."""
    values = []
    for name, value in headers.items():
        if name.lower() in CREDENTIAL_HEADERS:
            values.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme.lower() in ("bearer", "basic"):
                values.append(token.strip())
    return values


def redact_bytes(body: bytes, secrets: Iterable[str]) -> bytes:
    """``body`` with the exact ``secrets`` masked; unchanged (the same bytes) when none occurs."""
    for secret in secrets:
        # surrogateescape: a header value aiohttp decoded from non-UTF-8 bytes is encoded back
        # to those bytes instead of raising.
        raw = secret.encode("utf-8", "surrogateescape")
        if len(secret) >= MIN_SECRET_LENGTH and raw in body:
            body = body.replace(raw, MASK.encode())
    return body
