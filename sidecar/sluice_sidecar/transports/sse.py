"""What a well-formed provider event stream is, checked as its bytes go by.

``StreamCheck`` is fed a stream's bytes in order (as they are relayed, nothing is held back)
and tells the transport whether the stream started with a real event and whether it ended
with its terminator (OpenAI's ``data: [DONE]``, Anthropic's ``message_stop`` event), and the
cache whether the whole stream was well-formed: every line a known SSE field or a comment,
every ``data`` payload JSON. It keeps only the event being received, at most
``MAX_EVENT_BYTES``; a longer event is not checked and makes the stream not well-formed. Once
the transport relays a stream (``relaying``), only its terminator is looked for.
"""

from __future__ import annotations

import orjson

MAX_EVENT_BYTES = 1024 * 1024
FIELDS = frozenset({b"data", b"event", b"id", b"retry"})
OPENAI_TERMINATOR = b"[DONE]"
ANTHROPIC_TERMINATOR = "message_stop"
# A payload whose "type" is "message_stop" holds these bytes, or else a \u escape.
_ANTHROPIC_END = ANTHROPIC_TERMINATOR.encode()
_ESCAPE = b"\\u"


class StreamCheck:
    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._max_event_bytes = max_event_bytes
        self._pending = bytearray()
        self._carried_cr = False  # the last chunk ended in \r: maybe half of a \r\n
        self._skipping = False  # inside an event too large to check, until its end
        self.data_events = 0  # counted until relaying
        self.well_formed = True
        self.terminated = False
        self._validating = True

    def relaying(self) -> None:
        """From now on only the terminator is looked for: a chunk of whole events that holds
        none is passed over, a payload is parsed only when it could be Anthropic's
        ``message_stop``, and ``well_formed`` and ``data_events`` speak for the events before.
        Relaying ends at the terminator: nothing is fed after it.

        The transport checks a stream's first event whole, then relays the rest watching only
        for its end: checking every relayed event was most of what a chunk cost."""
        self._validating = False

    def feed(self, chunk: bytes) -> None:
        if (
            not self._pending
            and not self._carried_cr
            and not self._skipping
            and chunk.endswith(b"\n\n")
            and not chunk.endswith(b"\n\n\n")
            and chunk.find(b"\r") < 0
        ):
            # The usual chunk: whole events and nothing after them. Cut where the loop below
            # would (the leftmost separators), without copying into the pending buffer.
            if (
                not self._validating
                # None of the events can be a terminator: no [DONE], no message_stop, no \u
                # escape that could spell it. ``find``, not ``in``, and no helper call: bytes'
                # ``in`` first tries its operand as an integer and clears the TypeError, and
                # on every chunk either costs as much as a scan (callgrind, CPython 3.11).
                and chunk.find(OPENAI_TERMINATOR) < 0
                and chunk.find(_ANTHROPIC_END) < 0
                and chunk.find(_ESCAPE) < 0
            ):
                return  # relaying, and none of these events can be the terminator
            for event in chunk[:-2].split(b"\n\n"):
                self._event(event)
            return
        # Work on the new bytes only: a stream sent one byte at a time must cost linear time.
        if self._carried_cr:
            chunk = b"\r" + chunk
        self._carried_cr = chunk.endswith(b"\r")
        if self._carried_cr:
            chunk = chunk[:-1]
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        start = max(len(self._pending) - 1, 0)  # a separator may straddle the chunks
        self._pending += chunk
        while (end := self._pending.find(b"\n\n", start)) >= 0:
            event = bytes(self._pending[:end])
            del self._pending[: end + 2]
            start = 0
            if self._skipping:
                self._skipping = False
            else:
                self._event(event)
        if len(self._pending) > self._max_event_bytes:
            self.well_formed = False
            self._skipping = True
            self._pending.clear()

    @property
    def complete(self) -> bool:
        """Well-formed from start to end, and its last event was the terminator."""
        return self.well_formed and self.terminated and not self._pending.strip()

    def _event(self, event: bytes) -> None:
        # The usual events first: one data line, after an event line (Anthropic) or not.
        single = event.partition(b"\n")[2] if event.startswith(b"event:") else event
        if single.startswith(b"data: ") and b"\n" not in single:
            self._data(single[6:])
            return
        data: list[bytes] = []
        for line in event.lstrip(b"\n").split(b"\n"):
            if not line or line.startswith(b":"):
                continue  # a comment (keep-alive), or the empty event of an extra blank line
            name, _, value = line.partition(b":")
            if name not in FIELDS:
                self.well_formed = False
                continue
            if name == b"data":
                data.append(value[1:] if value.startswith(b" ") else value)
        if data:
            self._data(b"\n".join(data))

    def _data(self, payload: bytes) -> None:
        if self._validating:
            self.data_events += 1
        self.terminated = payload.strip() == OPENAI_TERMINATOR
        if self.terminated:
            return
        if not self._validating and _ANTHROPIC_END not in payload and _ESCAPE not in payload:
            return
        try:
            document = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.well_formed = False
            return
        self.terminated = isinstance(document, dict) and document.get("type") == (
            ANTHROPIC_TERMINATOR
        )


def is_complete_stream(body: bytes) -> bool:
    """Whether a whole recorded stream is well-formed and ends with its terminator."""
    check = StreamCheck(max_event_bytes=len(body) + 1)
    check.feed(body)
    return check.complete
