"""The model a streamed answer names, from its first event (unit)."""

from __future__ import annotations

import pytest

from sluice_sidecar.observability.otel.calls import stream_model

OPENAI_CHUNK = (
    b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-2024-08-06",'
    b'"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'
)
ANTHROPIC_START = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"m1","type":"message",'
    b'"model":"claude-sonnet-4-5-20250929","usage":{"input_tokens":9}}}\n\n'
)


def test_the_model_is_read_from_openai_chunks_and_anthropic_message_start() -> None:
    assert stream_model(b": keep-alive\n\n" + OPENAI_CHUNK) == "gpt-4o-2024-08-06"
    assert stream_model(ANTHROPIC_START + b"event: ping\n") == "claude-sonnet-4-5-20250929"


@pytest.mark.parametrize(
    "first_chunk",
    [
        b"",
        b"data: not json\n\n",
        b"data: [1, 2]\n\n",
        b'data: {"model": 7}\n\n',
        b'data: {"type":"message_start","message":"m"}\n\n',
        b'data: {"choices":[]}\n\n' + OPENAI_CHUNK,  # only the first event is read
    ],
)
def test_a_first_event_naming_no_model_gives_none(first_chunk: bytes) -> None:
    assert stream_model(first_chunk) is None
