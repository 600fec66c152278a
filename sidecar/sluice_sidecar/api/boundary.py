"""What a caller may send: the checks of the request boundary, pure and cheap (no I/O).

``proxy.py`` calls these once per request, before anything is kept in memory or passed to a
stage, so every later module can rely on a body that is a JSON object of bounded nesting with a
bounded, printable model name, and on ``X-LLM-*`` values that are short, printable text.
The fuzz target (``bench/fuzz_request.py``) drives ``parse_body`` directly. Each refusal is a
``LimitExceeded`` naming the limit, counted in ``sluice_limits_hit_total{limit}``; the
limits and their reasons are listed in docs/sidecar.md ("Limits").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from sluice_sidecar.errors import LimitExceeded, MalformedRequest

# orjson refuses to encode past 254 levels and the usage estimate recurses; real LLM requests
# (messages, tool schemas) stay under about 20. 64 leaves room and keeps every stage safe.
MAX_JSON_DEPTH = 64
# Model names key metrics, breakers, prices, the usage ledger and session reports.
MAX_MODEL_CHARS = 256
# Headers the sidecar reads and keeps (sessions, budgets per session, queue labels).
SIDECAR_HEADERS = ("x-llm-session", "x-llm-operation", "x-llm-priority", "x-llm-cache")
MAX_HEADER_CHARS = 256
# Keys are ASCII at every provider; the sidecar compares, hashes and redacts them as text.
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key")


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object with a usable model; raises MalformedRequest."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        if "depth limit" in str(error):
            raise _too_deep() from error
        raise MalformedRequest(f"request body is not valid JSON: {error}") from error
    if not isinstance(body, dict):
        raise MalformedRequest("request body must be a JSON object")
    # A body cannot nest deeper than it has brackets (those in strings included): most bodies
    # have fewer than the limit, and counting them costs a tenth of walking the document.
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and nesting_depth(body) > MAX_JSON_DEPTH:
        raise _too_deep()
    check_model(body.get("model"))
    return body


def nesting_depth(value: Any) -> int:
    """Deepest level of arrays and objects (a flat object is 1, a scalar 0); never recursing.

    Walks one level at a time with comprehensions (a body of a million tiny arrays costs less
    than parsing it did) and stops one level past ``MAX_JSON_DEPTH``.
    """
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level and depth <= MAX_JSON_DEPTH:
        depth += 1
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list)
        ]
    return depth


def check_model(model: object) -> None:
    if not isinstance(model, str) or not model:
        raise MalformedRequest("'model' is required and must be a non-empty string")
    if len(model) > MAX_MODEL_CHARS:
        raise LimitExceeded(
            f"'model' is {len(model)} characters long; at most {MAX_MODEL_CHARS} are accepted",
            limit="name_length",
        )
    if not model.isprintable():
        raise LimitExceeded(
            "'model' must be printable text (no control characters)", limit="name_chars"
        )


def check_headers(headers: Mapping[str, str]) -> None:
    """The ``X-LLM-*`` values are short printable text, credentials printable text (aiohttp
    keeps undecodable bytes as lone surrogates, which no JSON writer or encoder accepts later)."""
    for name in SIDECAR_HEADERS:
        value = headers.get(name)
        if value is not None and len(value) > MAX_HEADER_CHARS:
            raise LimitExceeded(
                f"header {name} is {len(value)} characters long;"
                f" at most {MAX_HEADER_CHARS} are accepted",
                limit="header_length",
            )
    for name in SIDECAR_HEADERS + CREDENTIAL_HEADERS:
        value = headers.get(name)
        if value is not None and not value.isprintable():
            raise LimitExceeded(
                f"header {name} must be printable UTF-8 text (no control characters)",
                limit="header_chars",
            )


def _too_deep() -> LimitExceeded:
    return LimitExceeded(
        f"request body nesting is deeper than {MAX_JSON_DEPTH} levels of arrays and objects",
        limit="json_depth",
    )
