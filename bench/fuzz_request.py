"""Fuzz target: the request boundary (body parsing, header checks) and the cache key.

Run:  .venv/bin/python bench/fuzz_request.py bench/fuzz_corpus -max_total_time=600
(needs the ``fuzz`` extra: ``pip install -e '.[fuzz]'``; libFuzzer flags pass through).
An input is one length byte N, N bytes of header value (decoded the way aiohttp decodes
header bytes: UTF-8 with surrogate escapes) used for every caller header, then the request
body; ``bench/fuzz_request.py --seed`` rewrites the corpus from readable seeds. The properties:
``parse_body`` and ``check_headers`` raise nothing but ``MalformedRequest``; a body
they accept is encodable again (the upstream stage re-encodes it) and yields one stable cache
key, whatever the credential and variant headers hold.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import orjson

    from sluice_sidecar.api.boundary import check_headers, parse_body
    from sluice_sidecar.economics.cache_key import cache_key, credential_hash
    from sluice_sidecar.errors import MalformedRequest

CORPUS = Path(__file__).parent / "fuzz_corpus"
SEEDS: dict[str, tuple[bytes, bytes]] = {  # name: (header value, body)
    "chat": (b"job-42", b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'),
    "messages": (
        b"2023-06-01",
        b'{"model":"claude-sonnet-4","max_tokens":64,"stream":true,'
        b'"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}',
    ),
    "embeddings_tokens": (b"", b'{"model":"text-embedding-3-small","input":[[1,2,3],[4,5]]}'),
    "tools": (
        b"Bearer sk-x",
        b'{"model":"gpt-4o","prompt":"x","temperature":1.0,"n":2,"tools":[{"type":"function",'
        b'"function":{"name":"f","parameters":{"type":"object","properties":{"a":{}}}}}]}',
    ),
    "deep": (b"high", b'{"model":"m","x":' + b"[" * 70 + b"]" * 70 + b"}"),
    "latin1_header": (b"caf\xe9", b'{"model":"m","temperature":0}'),
    "control_model": (b"a\x01b", b'{"model":"m\\u0000","metadata":{"user":"u"},"seed":1e308}'),
}


def split(data: bytes) -> tuple[str, bytes]:
    length = data[0] if data else 0
    return data[1 : 1 + length].decode("utf-8", "surrogateescape"), data[1 + length :]


def write_seeds() -> None:
    CORPUS.mkdir(exist_ok=True)
    for name, (value, body) in SEEDS.items():
        (CORPUS / name).write_bytes(bytes([len(value)]) + value + body)


def key_of(body: dict, value: str) -> str:
    return cache_key(
        tenant="fuzz/app",
        credentials=credential_hash({"authorization": value, "x-api-key": value}),
        route=f"/v1/chat/completions?{value}",
        operation=("Completion", None, None, None, False),
        providers=("openai",),
        stream=False,
        body=body,
        variant=(value, "", ""),
    )


def test_one_input(data: bytes) -> None:
    value, raw = split(data)
    with contextlib.suppress(MalformedRequest):
        check_headers({"x-llm-session": value, "x-llm-priority": value, "authorization": value})
    try:
        body = parse_body(raw)
    except MalformedRequest:
        return
    again = orjson.loads(orjson.dumps(body))
    assert key_of(body, value) == key_of(again, value), "the cache key is not stable"


def main() -> None:
    if sys.argv[1:] == ["--seed"]:
        write_seeds()
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
