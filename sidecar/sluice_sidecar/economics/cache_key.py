"""The exact-match cache key: SHA-256 of the canonical request.

What goes in: the tenant (the workload's namespace/name and a hash of the caller's credential
headers, so two tenants or two callers with different keys never share an entry), the API and
route with its query string (Azure's ``api-version``), the request headers that select API
behaviour (``VARIANT_HEADERS``: ``anthropic-version``, ``anthropic-beta``, ``openai-beta``), the
operation and its preset (which the upstream stage fills into the request), the
candidate providers, the model, whether the answer is streamed, and every request field except
the few that cannot change the answer (``IGNORED_FIELDS``). Unknown and provider-specific
fields are in, so a new answer-changing parameter never aliases two requests.

Canonical form: keys sorted at every level, floats that are whole numbers written as integers
(``temperature: 1`` and ``1.0`` are one request; up to 2**53), everything else as sent.

For the cache hit's case, a repeated request: ``LastCredentials`` remembers the hash of the
credentials seen last, and ``KeyMemo`` the keys of recent requests by their exact bytes and
everything else the key is made of, so a repeated request gets its key with one dictionary
look-up instead of canonicalising and hashing its body again; bounded in entries and bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

import orjson

KEY_VERSION = 1
IGNORED_FIELDS = frozenset({"stream", "stream_options", "user", "metadata", "store"})
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key")
VARIANT_HEADERS = ("anthropic-version", "anthropic-beta", "openai-beta")
EXACT_FLOAT_INTEGERS = (
    2**53
)  # beyond, a float is no longer one integer (and JSON ints stop at 64 bits)
MEMO_ENTRIES = 4096
MEMO_BYTES = 8 * 1024 * 1024  # request bodies held by the memo, at most
MEMO_BODY_BYTES = 64 * 1024  # a larger body is keyed every time (hashing it is the cost anyway)

V = TypeVar("V")


def credential_hash(headers: dict[str, str]) -> str:
    return _material_hash(_credential_material(headers))


def _credential_material(headers: dict[str, str]) -> str:
    return "\x00".join([headers.get(name, "") for name in CREDENTIAL_HEADERS])


def _material_hash(material: str) -> str:
    return hashlib.sha256(_exact_bytes(material)).hexdigest()[:32]


class LastCredentials:
    """``credential_hash`` with the last credentials' hash remembered: a workload's calls mostly
    carry one key, so most calls skip the SHA-256. Holds one value, the credentials in use."""

    def __init__(self) -> None:
        self._material: str | None = None
        self._hash = ""

    def hash(self, headers: dict[str, str]) -> str:
        material = _credential_material(headers)
        if material != self._material:
            self._hash = _material_hash(material)
            self._material = material
        return self._hash


def _exact_bytes(text: str) -> bytes:
    """UTF-8, with lone surrogates kept (aiohttp's form of header bytes that are not UTF-8):
    one-to-one, so distinct header values never share a key, and it never raises."""
    return text.encode("utf-8", "surrogatepass")


def _header_text(text: str) -> str:
    """A caller's header text that orjson can encode: its exact bytes, one char per byte."""
    return text if text.isascii() else _exact_bytes(text).decode("latin-1")


def canonical(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= EXACT_FLOAT_INTEGERS:
        return int(value)
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def cache_key(
    *,
    tenant: str,
    credentials: str,
    route: str,
    operation: tuple[Any, ...],
    providers: tuple[str, ...],
    stream: bool,
    body: dict[str, Any],
    variant: tuple[str, ...] = (),
) -> str:
    fields = {k: v for k, v in body.items() if k not in IGNORED_FIELDS}
    document = {
        "v": KEY_VERSION,
        "tenant": tenant,
        "credentials": credentials,
        "route": _header_text(route),
        "operation": list(operation),
        "providers": list(providers),
        "stream": stream,
        "variant": [_header_text(value) for value in variant],
        "body": canonical(fields),
    }
    encoded = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(encoded).hexdigest()


class BodyMemo(Generic[V]):
    """Values made from recent requests, by the request's exact body bytes and the rest of what
    the value is made of (``context``, as hashable values). For the cache key, the context is
    everything but the body that goes into ``cache_key``; the metering stage keeps estimates
    the same way. Whoever owns one clears it when what the context cannot say changes (the
    configuration: tenant, providers, prices). Oldest entries go first past the bounds."""

    def __init__(self, entries: int = MEMO_ENTRIES, max_bytes: int = MEMO_BYTES) -> None:
        self._values: dict[tuple[bytes, Hashable], V] = {}
        self._entries = entries
        self._max_bytes = max_bytes
        self._bytes = 0

    def get(self, raw_body: bytes, context: Hashable) -> V | None:
        return self._values.get((raw_body, context))

    def put(self, raw_body: bytes, context: Hashable, value: V) -> None:
        if len(raw_body) > MEMO_BODY_BYTES or (raw_body, context) in self._values:
            return
        self._values[(raw_body, context)] = value
        self._bytes += len(raw_body)
        while len(self._values) > self._entries or self._bytes > self._max_bytes:
            oldest = next(iter(self._values))
            del self._values[oldest]
            self._bytes -= len(oldest[0])

    def clear(self) -> None:
        self._values.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._values)


KeyMemo = BodyMemo[str]  # the cache keys of recent requests
