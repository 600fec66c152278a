"""Checking provider event streams as they pass (unit)."""

from __future__ import annotations

import time

import pytest

from sluice_sidecar.transports.sse import StreamCheck, is_complete_stream

OPENAI = b'data: {"choices": []}\n\ndata: {"choices": []}\n\ndata: [DONE]\n\n'
ANTHROPIC = (
    b'event: message_start\ndata: {"type": "message_start"}\n\n'
    b": keep-alive\n\n"
    b'event: message_stop\ndata: {"type": "message_stop"}\n\n'
)


@pytest.mark.parametrize("stream", [OPENAI, ANTHROPIC, OPENAI.replace(b"\n", b"\r\n")])
def test_complete_streams_are_complete_however_they_are_cut(stream: bytes) -> None:
    assert is_complete_stream(stream)
    check = StreamCheck()
    for i in range(len(stream)):  # one byte at a time: every boundary is a chunk boundary
        check.feed(stream[i : i + 1])
    assert check.complete and check.data_events == (3 if stream.startswith(b"data") else 2)


@pytest.mark.parametrize(
    "stream",
    [
        OPENAI[: -len(b"data: [DONE]\n\n")],  # cut before its terminator
        ANTHROPIC[: ANTHROPIC.index(b"event: message_stop")],
        b"<html><body>Service moved</body></html>\n\n",
        b"data: {not json\n\ndata: [DONE]\n\n",
        b"data: [DONE]\n\ndata: {}\n\n",  # events after the end
        OPENAI + b'data: {"partial',  # an unfinished event after the end
    ],
)
def test_cut_or_malformed_streams_are_not_complete(stream: bytes) -> None:
    assert not is_complete_stream(stream)


def test_an_event_past_the_size_limit_is_skipped_and_spoils_the_stream() -> None:
    check = StreamCheck(max_event_bytes=64)
    check.feed(b"data: " + b"x" * 100)
    check.feed(b"\n\ndata: [DONE]\n\n")
    assert check.terminated and not check.well_formed and not check.complete


def test_a_stream_fed_one_byte_at_a_time_costs_linear_time() -> None:
    """256 KiB in single bytes: about 0.2 s; rescanning what is pending on every byte took 30 s."""
    stream = b"data: " + b"x" * 256 * 1024 + b"\r\n\r\ndata: [DONE]\n\n"
    check = StreamCheck()
    started = time.perf_counter()
    for i in range(len(stream)):
        check.feed(stream[i : i + 1])
    assert time.perf_counter() - started < 3.0
    assert check.data_events == 2 and check.terminated and not check.well_formed


ESCAPED_END = b'event: message_stop\ndata: {"type": "message\\u005fstop"}\n\n'


@pytest.mark.parametrize(
    ("events", "ends"),
    [
        ([b'data: {"choices": []}\n\n', b"data: [DONE]\n\n"], True),
        (
            [b'data: {"type": "content_block_delta"}\n\n', ANTHROPIC.split(b": keep-alive\n\n")[1]],
            True,
        ),
        ([b'data: {"type": "ping"}\n\n', ESCAPED_END], True),  # a \u escape spelling the end
        ([b'data: {"type": "message_stop_soon"}\n\n', b'data: ["message_stop"]\n\n'], False),
        ([b"data: [DO", b"NE]\n\n"], True),  # the terminator cut in two
    ],
)
def test_a_relayed_stream_ends_at_its_terminator_and_only_there(
    events: list[bytes], ends: bool
) -> None:
    """Relaying, only the terminator is looked for; it is found as a whole check finds it."""
    whole, relaying = StreamCheck(), StreamCheck()
    relaying.relaying()
    found = []
    for chunk in events:
        whole.feed(chunk)
        relaying.feed(chunk)
        found.append(relaying.terminated)
    assert relaying.terminated == whole.terminated == ends
    assert found[:-1] == [False] * (len(found) - 1)


def test_extra_blank_lines_between_events_are_well_formed() -> None:
    """A blank line ends an event; more of them are empty events, which SSE allows."""
    stream = b'data: {"choices": []}\n\n\n\n\ndata: [DONE]\n\n\n\n'
    assert is_complete_stream(stream)
    check = StreamCheck()
    check.feed(b"\n\n" + stream)
    assert check.well_formed and check.data_events == 2
