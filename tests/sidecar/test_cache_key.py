"""Cache key canonicalisation: equal requests share a key, any answer-relevant change does not."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sluice_sidecar.economics.cache_key import cache_key, canonical, credential_hash

BASE: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "hi"}],
    "temperature": 0,
}


def key(body: dict[str, Any] | None = None, **overrides: Any) -> str:
    fields: dict[str, Any] = {
        "tenant": "ns/app",
        "credentials": credential_hash({"authorization": "Bearer a"}),
        "route": "/v1/chat/completions",
        "operation": ("Completion", None, None, None, False),
        "providers": ("openai",),
        "stream": False,
        "body": BASE if body is None else body,
    }
    return cache_key(**(fields | overrides))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)  # what orjson parses
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6))
def test_key_ignores_field_order(body: dict[str, Any]) -> None:
    reordered = dict(reversed(list(body.items())))
    assert key(body) == key(reordered)


@given(st.integers(min_value=-(2**50), max_value=2**50))
def test_whole_floats_equal_integers(n: int) -> None:
    assert canonical(float(n)) == n
    assert key(BASE | {"temperature": float(n)}) == key(BASE | {"temperature": n})


ANSWER_FIELDS = {
    "messages": [{"role": "user", "content": "hi!"}],
    "model": "gpt-4o-mini",
    "temperature": 0.2,
    "top_p": 0.5,
    "seed": 7,
    "tools": [{"type": "function", "function": {"name": "f"}}],
    "tool_choice": "required",
    "response_format": {"type": "json_object"},
    "reasoning_effort": "high",
    "max_tokens": 5,
    "n": 2,
    "logit_bias": {"50256": -100},
    "some_provider_extra": {"x": 1},
}


@given(st.sampled_from(sorted(ANSWER_FIELDS)))
def test_every_answer_relevant_field_changes_the_key(field: str) -> None:
    assert key(BASE | {field: ANSWER_FIELDS[field]}) != key(BASE)


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_tenants_and_credentials_never_share(a: str, b: str) -> None:
    if a != b:
        assert key(tenant=a) != key(tenant=b)
        assert key(credentials=credential_hash({"x-api-key": a})) != key(
            credentials=credential_hash({"x-api-key": b})
        )


def test_fields_that_cannot_change_the_answer_are_ignored() -> None:
    extra = {"stream_options": {"include_usage": True}, "user": "u1", "metadata": {"a": "b"}}
    assert key(BASE | extra) == key(BASE)
    assert key(stream=True) != key(stream=False)
    assert key(operation=("Other", None, None, None, False)) != key()
    assert key(providers=("anthropic",)) != key()
    assert key(variant=("2023-06-01", "output-128k", "")) != key(variant=("2023-06-01", "", ""))
    assert key(route="/v1/chat/completions?api-version=2024-10-21") != key()


# aiohttp keeps header bytes that are not UTF-8 as lone surrogates ("caf\xe9" -> "caf\udce9").
UNDECODABLE = st.binary(max_size=12).map(lambda raw: raw.decode("utf-8", "surrogateescape"))


@given(UNDECODABLE, UNDECODABLE)
def test_headers_that_are_not_utf8_give_keys_and_never_collide(a: str, b: str) -> None:
    def with_headers(value: str) -> str:
        credentials = credential_hash({"authorization": value})
        return key(credentials=credentials, route=f"/v1/chat?{value}", variant=(value, "", ""))

    assert (with_headers(a) == with_headers(b)) == (a == b)
