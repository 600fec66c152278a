"""Token usage: read from provider answers (JSON and SSE streams) and estimated before a call.

Shared by the metering, budget and cache stages (none of which import each other).

* ``usage_from_json``: OpenAI ``usage`` (``prompt_tokens``, ``completion_tokens``,
  ``prompt_tokens_details.cached_tokens``) or Anthropic ``usage`` (``input_tokens``,
  ``output_tokens``, ``cache_read_input_tokens``, ``cache_creation_input_tokens``).
  ``Usage.input_tokens`` always includes cached input tokens.
* ``SseUsageReader``: fed the raw stream, re-cut into whole SSE events; finds the OpenAI usage
  chunk (and drops it when the sidecar asked for it on the client's behalf) and the Anthropic
  ``message_start`` / ``message_delta`` usage. Only events that mention ``"usage"`` are parsed.
  ``final`` tells whether the stream's closing usage arrived (a cut Anthropic stream has only
  ``message_start``'s input count, so its output is not known).
* ``estimate_prompt_tokens``: an offline estimate, about 4 characters a token plus a few tokens
  per message (no tokenizer data is downloaded at run time); token-id arrays count exactly.
* ``output_bound``: the most output tokens a call can produce, and from which setting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REQUEST = 3
DEFAULT_MAX_OUTPUT_TOKENS = 4096
MAX_PENDING_EVENT_BYTES = 1024 * 1024  # a partial SSE event larger than this is passed on as is
_USAGE, _USAGE_SPACED = b'"usage":{', b'"usage": {'  # a usage object, not "usage":null
_EVENT_END = re.compile(rb"(\r?\n\r?\n)")  # SSE events end with a blank line, LF or CRLF


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def usage_from_json(document: Any) -> Usage | None:
    """Usage of a non-streamed answer (or of one usage object); None when it has none."""
    usage = document.get("usage") if isinstance(document, dict) else None
    if not isinstance(usage, dict):
        return None
    return usage_from_object(usage)


def usage_from_object(usage: dict[str, Any]) -> Usage | None:
    if "input_tokens" in usage or "output_tokens" in usage:  # Anthropic
        cached = _int(usage.get("cache_read_input_tokens"))
        created = _int(usage.get("cache_creation_input_tokens"))
        inputs = _int(usage.get("input_tokens")) + cached + created
        return Usage(inputs, _int(usage.get("output_tokens")), cached)
    if "prompt_tokens" in usage:  # OpenAI
        details = usage.get("prompt_tokens_details")
        cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
        return Usage(_int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")), cached)
    return None


class SseUsageReader:
    """Watch an SSE stream for usage; ``feed`` returns the bytes to pass on to the client.

    Bytes are passed on at whole-event boundaries. With ``strip_openai_usage`` the OpenAI
    usage-only chunk (``"choices": []`` with a ``usage``) is removed from what is passed on.
    """

    def __init__(self, *, strip_openai_usage: bool = False) -> None:
        self.strip = strip_openai_usage
        self._pending = bytearray()  # the start of an event not yet ended; appended to in place
        self._input = 0
        self._output = 0
        self._cached = 0
        self.found = False  # some usage seen
        self.final = False  # the stream's closing usage seen (OpenAI usage chunk, message_delta)

    @property
    def usage(self) -> Usage | None:
        return Usage(self._input, self._output, self._cached) if self.found else None

    def feed(self, chunk: bytes) -> bytes:
        if (
            not self._pending
            and chunk.endswith(b"\n\n")
            # _has_usage inlined: on every chunk a call costs as much as a scan.
            and chunk.find(_USAGE) < 0
            and chunk.find(_USAGE_SPACED) < 0
        ):
            return chunk  # the common chunk: whole events without usage, passed on uncopied
        # Only the new bytes (and the 3 before them, for a separator split across chunks) can
        # end an event: a stream trickled in small chunks costs linear time, not quadratic.
        held = len(self._pending)
        self._pending += chunk
        data = self._pending
        lf, crlf = data.rfind(b"\n\n", max(held - 1, 0)), data.rfind(b"\r\n\r\n", max(held - 3, 0))
        end = max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)
        if end == 0:
            if len(data) > MAX_PENDING_EVENT_BYTES:
                self._pending = bytearray()
                return bytes(data)
            return b""
        complete = bytes(data[:end])
        del self._pending[:end]
        if not _has_usage(complete):
            return complete
        parts = _EVENT_END.split(complete)  # event, separator, event, separator, ..., b""
        kept = [
            parts[i] + parts[i + 1] for i in range(0, len(parts) - 1, 2) if self._event(parts[i])
        ]
        return b"".join(kept)

    def flush(self) -> bytes:
        rest, self._pending = bytes(self._pending), bytearray()
        if rest and _has_usage(rest) and not self._event(rest):
            return b""
        return rest

    def _event(self, event: bytes) -> bool:
        """Read usage from one event; False when the event must not reach the client."""
        if not _has_usage(event):
            return True
        for line in event.splitlines():
            if not line.startswith(b"data:"):
                continue
            try:
                payload = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                return True
            if isinstance(payload, dict):
                return self._payload(payload)
        return True

    def _payload(self, payload: dict[str, Any]) -> bool:
        kind = payload.get("type")
        if kind == "message_start":
            message = payload.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if isinstance(usage, dict):
                self._take(usage_from_object(usage), output=False)
            return True
        if kind == "message_delta":
            usage = payload.get("usage")
            if isinstance(usage, dict):
                if usage.get("input_tokens"):
                    self._take(usage_from_object(usage), output=False)
                self._output = _int(usage.get("output_tokens"))
                self.found = self.final = True
            return True
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self._take(usage_from_object(usage), output=True)
            self.final = self.found
            if self.strip and payload.get("choices") == []:
                return False
        return True

    def _take(self, usage: Usage | None, *, output: bool) -> None:
        if usage is None:
            return
        self.found = True
        self._input, self._cached = usage.input_tokens, usage.cached_input_tokens
        if output:
            self._output = usage.output_tokens


def _has_usage(data: bytes) -> bool:
    # OpenAI repeats "usage":null in every chunk once usage is requested: skip those cheaply.
    # ``find``, not ``in``: bytes' ``in`` first tries its argument as an integer and clears
    # the TypeError, which costs more than the scan (callgrind, CPython 3.11).
    return data.find(_USAGE) >= 0 or data.find(_USAGE_SPACED) >= 0


def _measure(value: Any, token_ids: bool) -> tuple[int, int]:
    """Characters of text and count of token ids in a request field (walked without recursion).

    With ``token_ids`` an integer is one token: ``prompt``/``input`` may be token arrays (a list
    of ints, or a list of such lists) in ``/v1/completions`` and ``/v1/embeddings``, and an int
    array's length is exactly its token count.
    """
    chars = tokens = 0
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            chars += len(item)
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            tokens += 1 if token_ids else 0
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(v for k, v in item.items() if k not in ("type", "role"))
    return chars, tokens


def estimate_prompt_tokens(body: dict[str, Any] | None) -> int:
    """Prompt tokens from the request: ~4 characters a token, plus message overhead; token-id
    arrays counted exactly."""
    if not body:
        return 0
    chars = 0
    tokens = 0
    messages = 0
    for field in ("messages", "system", "prompt", "input", "tools", "functions"):
        value = body.get(field)
        if value is None:
            continue
        text, ids = _measure(value, token_ids=field in ("prompt", "input"))
        chars += text
        tokens += ids
        if field == "messages" and isinstance(value, list):
            messages += len(value)
    return (
        -(-chars // CHARS_PER_TOKEN) + tokens + messages * TOKENS_PER_MESSAGE + TOKENS_PER_REQUEST
    )


@dataclass(frozen=True, slots=True)
class OutputBound:
    """The most output tokens a call can produce, and where that figure comes from."""

    tokens: int
    source: str  # "max_tokens" (or the field the caller set), "the operation preset", "the default"


LIMIT_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


def output_bound(
    body: dict[str, Any] | None, kind: str, preset: int | None, *, force_preset: bool = False
) -> OutputBound:
    """Output tokens at most: the caller's limit, else the preset, else a default.

    Mirrors ``runtime.apply_preset``: a forced preset replaces the caller's limit, and a preset
    is filled in only when the body names no limit field at all.
    """
    if kind in ("embeddings", "models") or body is None:
        return OutputBound(0, "the route")
    if preset and force_preset:
        return OutputBound(preset, "the operation preset")
    for field in LIMIT_FIELDS:
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return OutputBound(value, field)
    if preset and not any(field in body for field in LIMIT_FIELDS[:2]):
        return OutputBound(preset, "the operation preset")
    return OutputBound(DEFAULT_MAX_OUTPUT_TOKENS, "the default")


def output_token_bound(body: dict[str, Any] | None, kind: str, preset: int | None) -> int:
    """The most output tokens the call can produce: max_tokens, else the preset, else a default."""
    return output_bound(body, kind, preset).tokens
