"""Usage extraction from answers and streams, and the offline prompt-token estimate."""

from __future__ import annotations

import time

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice_sidecar.economics.usage import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    MAX_PENDING_EVENT_BYTES,
    OutputBound,
    SseUsageReader,
    Usage,
    estimate_prompt_tokens,
    output_bound,
    output_token_bound,
    usage_from_json,
)


def _frame(obj: object) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


OPENAI_STREAM = (
    _frame({"choices": [{"delta": {"content": "Hel"}}], "usage": None})
    + _frame({"choices": [{"delta": {"content": "lo"}}], "usage": None})
    + _frame(
        {
            "choices": [],
            "usage": {
                "prompt_tokens": 12,
                "completion_tokens": 2,
                "prompt_tokens_details": {"cached_tokens": 4},
            },
        }
    )
    + b"data: [DONE]\n\n"
)
ANTHROPIC_STREAM = (
    b"event: message_start\n"
    + _frame(
        {
            "type": "message_start",
            "message": {
                "usage": {"input_tokens": 9, "output_tokens": 1, "cache_read_input_tokens": 3}
            },
        }
    )
    + b"event: content_block_delta\n"
    + _frame({"type": "content_block_delta", "delta": {"text": "Hi"}})
    + b"event: message_delta\n"
    + _frame({"type": "message_delta", "usage": {"output_tokens": 7}})
    + b"event: message_stop\n"
    + _frame({"type": "message_stop"})
)


def test_openai_and_anthropic_json_usage() -> None:
    openai = {"usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
    assert usage_from_json(openai) == Usage(10, 5, 0)
    anthropic = {"usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 20}}
    assert usage_from_json(anthropic) == Usage(30, 5, 20)
    assert usage_from_json({"usage": {"prompt_tokens": 3, "total_tokens": 3}}) == Usage(3, 0)
    assert usage_from_json({"choices": []}) is None


def _feed(reader: SseUsageReader, data: bytes, size: int) -> bytes:
    out = b"".join(reader.feed(data[i : i + size]) for i in range(0, len(data), size))
    return out + reader.flush()


@given(st.integers(min_value=1, max_value=64))
def test_openai_stream_usage_whatever_the_chunking(size: int) -> None:
    kept = SseUsageReader()
    assert _feed(kept, OPENAI_STREAM, size) == OPENAI_STREAM
    assert kept.usage == Usage(12, 2, 4)
    stripped = SseUsageReader(strip_openai_usage=True)
    out = _feed(stripped, OPENAI_STREAM, size)
    assert b'"prompt_tokens"' not in out and out.endswith(b"data: [DONE]\n\n")
    assert stripped.usage == Usage(12, 2, 4)


@given(st.integers(min_value=1, max_value=64))
def test_anthropic_stream_usage(size: int) -> None:
    reader = SseUsageReader(strip_openai_usage=True)
    assert _feed(reader, ANTHROPIC_STREAM, size) == ANTHROPIC_STREAM
    assert reader.usage == Usage(12, 7, 3)


def _events(stream: bytes) -> list[bytes]:
    return [event + b"\n\n" for event in stream.split(b"\n\n")[:-1]]


@pytest.mark.parametrize("stream", [OPENAI_STREAM, ANTHROPIC_STREAM], ids=["openai", "anthropic"])
def test_event_aligned_chunks_as_providers_send_them_are_read_alike(stream: bytes) -> None:
    """One event per chunk (what providers send, and the path that passes chunks on uncopied)
    reads the same usage and passes on the same bytes as any other chunking."""
    aligned, whole = (
        SseUsageReader(strip_openai_usage=True),
        SseUsageReader(strip_openai_usage=True),
    )
    out = b"".join(aligned.feed(event) for event in _events(stream)) + aligned.flush()
    assert out == _feed(whole, stream, len(stream))
    assert aligned.usage == whole.usage and aligned.usage is not None
    assert aligned.final == whole.final


def test_stream_without_usage_is_unknown() -> None:
    reader = SseUsageReader()
    reader.feed(_frame({"choices": [{"delta": {"content": "x"}}]}))
    assert reader.usage is None


def test_prompt_estimate_and_output_bound() -> None:
    body = {"messages": [{"role": "user", "content": "x" * 400}, {"role": "user", "content": ""}]}
    assert estimate_prompt_tokens(body) == 100 + 2 * 4 + 3
    assert estimate_prompt_tokens({"input": ["abcd", "efgh"]}) == 2 + 3
    assert output_token_bound({"max_tokens": 50}, "chat", 800) == 50
    assert output_token_bound({}, "chat", 800) == 800
    assert output_token_bound({}, "chat", None) == DEFAULT_MAX_OUTPUT_TOKENS
    assert output_token_bound({"max_tokens": 50}, "embeddings", None) == 0


@given(st.integers(min_value=1, max_value=64))
def test_crlf_framed_streams_are_read_and_stripped(size: int) -> None:
    crlf = OPENAI_STREAM.replace(b"\n\n", b"\r\n\r\n")
    reader = SseUsageReader(strip_openai_usage=True)
    out = _feed(reader, crlf, size)
    assert reader.usage == Usage(12, 2, 4)
    assert b'"prompt_tokens"' not in out and out.endswith(b"data: [DONE]\r\n\r\n")
    assert out.count(b"\r\n\r\n") == 3  # two content events and [DONE]


def test_token_array_prompts_count_one_token_per_id() -> None:
    assert estimate_prompt_tokens({"prompt": list(range(700))}) == 700 + 3
    assert estimate_prompt_tokens({"input": [[1, 2, 3], list(range(50))]}) == 53 + 3
    assert estimate_prompt_tokens({"input": ["abcd", [7] * 10]}) == 1 + 10 + 3
    assert estimate_prompt_tokens({"messages": [{"role": "user", "content": 12345}]}) == 4 + 3


def test_deeply_nested_bodies_are_measured_without_recursion() -> None:
    deep: list[object] = ["abcd"]
    for _ in range(100_000):
        deep = [deep]
    assert estimate_prompt_tokens({"input": deep}) == 1 + 3


def test_output_bound_says_where_it_comes_from() -> None:
    assert output_bound({"max_tokens": 50}, "chat", 800) == OutputBound(50, "max_tokens")
    assert output_bound({}, "chat", 800) == OutputBound(800, "the operation preset")
    assert output_bound({"max_tokens": None}, "chat", 800).source == "the default"
    forced = output_bound({"max_tokens": 50}, "chat", 800, force_preset=True)
    assert forced == OutputBound(800, "the operation preset")  # the preset replaces it upstream
    assert output_bound({"max_tokens": True}, "chat", None).source == "the default"


def test_only_the_closing_usage_makes_a_stream_final() -> None:
    start, _, _ = ANTHROPIC_STREAM.partition(b"event: content_block")
    cut = SseUsageReader()
    cut.feed(start)
    assert cut.found and not cut.final  # message_start's input count, no output count yet
    whole = SseUsageReader()
    whole.feed(ANTHROPIC_STREAM)
    assert whole.final
    chat = SseUsageReader()
    chat.feed(OPENAI_STREAM)
    assert chat.final


def test_a_stream_trickled_in_small_chunks_costs_linear_time() -> None:
    """A hostile upstream sends 1 MiB without an event end, 64 bytes at a time (was ~13 s)."""
    event = b"data: " + b"x" * (MAX_PENDING_EVENT_BYTES - 100) + b"\n\n"
    reader = SseUsageReader()
    started = time.process_time()
    passed = b"".join(reader.feed(event[i : i + 64]) for i in range(0, len(event), 64))
    assert time.process_time() - started < 1.0
    assert passed == event  # passed on whole once it ended
