"""``KeyMemo`` (keys of recent requests, bounded) and ``LastCredentials`` (the last hash)."""

from __future__ import annotations

from sluice_sidecar.economics.cache_key import (
    MEMO_BODY_BYTES,
    KeyMemo,
    LastCredentials,
    credential_hash,
)


def test_a_key_is_found_only_for_the_same_bytes_and_context() -> None:
    memo = KeyMemo()
    memo.put(b'{"a":1}', ("route", "creds"), "k1")
    assert memo.get(b'{"a":1}', ("route", "creds")) == "k1"
    assert memo.get(b'{"a":1}', ("route", "other creds")) is None
    assert memo.get(b'{"a": 1}', ("route", "creds")) is None


def test_oldest_entries_go_first_past_the_entry_bound() -> None:
    memo = KeyMemo(entries=2)
    for n in range(3):
        memo.put(b"%d" % n, (), f"k{n}")
    assert len(memo) == 2
    assert memo.get(b"0", ()) is None and memo.get(b"2", ()) == "k2"


def test_bodies_held_stay_within_the_byte_bound() -> None:
    memo = KeyMemo(max_bytes=10)
    for n in range(5):
        memo.put(b"%04d" % n, (), f"k{n}")  # 4 bytes each: two fit
    assert len(memo) == 2 and memo.get(b"0004", ()) == "k4"
    memo.put(b"x" * (MEMO_BODY_BYTES + 1), (), "big")  # never held, whatever the bounds
    assert memo.get(b"x" * (MEMO_BODY_BYTES + 1), ()) is None


def test_clear_forgets_every_key() -> None:
    memo = KeyMemo()
    memo.put(b"{}", (), "k")
    memo.clear()
    assert len(memo) == 0 and memo.get(b"{}", ()) is None


def test_last_credentials_hash_as_credential_hash_does_whatever_the_order() -> None:
    last = LastCredentials()
    callers = [{"authorization": "Bearer a"}, {"x-api-key": "b"}, {"authorization": "Bearer a"}]
    for headers in [*callers, *callers]:
        assert last.hash(headers) == credential_hash(headers)
    assert last.hash({"authorization": "Bearer a"}) != last.hash({"authorization": "Bearer b"})
