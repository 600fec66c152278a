"""The Anthropic wire format for the simulated upstream: ``POST /v1/messages`` and models.

Pure builders of JSON bodies and SSE events (``event:`` + ``data:`` lines), called by the server
in ``tests.support.simulator``; shapes follow what the official ``anthropic`` SDK parses.
"""

from __future__ import annotations

import datetime
from typing import Any

from tests.support.simulator_common import (
    Env,
    Generation,
    Problem,
    StreamPlan,
    content_text,
    count_words,
    dumps,
    generate,
    renew,
)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
DEFAULT_MESSAGES = {
    400: "Invalid request.",
    401: "invalid x-api-key",
    403: "Your API key does not have permission to use the specified resource.",
    404: "The requested resource could not be found.",
    429: "Number of requests has exceeded your rate limit.",
    529: "Overloaded",
}


def _event(name: str, obj: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + dumps(obj) + b"\n\n"


def _stop(gen: Generation) -> str:
    return "max_tokens" if gen.truncated else "end_turn"


class Messages:
    """``POST /v1/messages``."""

    id_format: str | None = "msg_01{:022x}"

    def renew(self, answer: dict[str, Any], env: Env) -> dict[str, Any]:
        return renew(answer, env, self.id_format)

    def check(self, body: Any, env: Env) -> Problem | None:
        if not isinstance(body, dict):
            return Problem(400, "There was an error parsing the body of your request.")
        for field in ("model", "max_tokens", "messages"):
            if field not in body:
                return Problem(400, f"{field}: Field required")
        if env.allowed is not None and body["model"] not in env.allowed:
            return Problem(404, f"model: {body['model']}")
        return None

    def _generate(self, body: dict[str, Any], env: Env) -> Generation:
        messages = body["messages"] if isinstance(body["messages"], list) else []
        texts = [content_text(m.get("content")) for m in messages if isinstance(m, dict)]
        texts.append(content_text(body.get("system")))
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        question = content_text(users[-1].get("content")) if users else ""
        return generate(env, question, count_words(*texts), body.get("max_tokens"))

    def _message(self, body: dict[str, Any], env: Env) -> dict[str, Any]:
        return {
            "id": f"msg_01{env.seq:022x}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
        }

    def answer(self, body: Any, env: Env) -> dict[str, Any]:
        gen = self._generate(body, env)
        out = self._message(body, env)
        out["content"] = [{"type": "text", "text": gen.text}]
        out["stop_reason"] = _stop(gen)
        out["usage"] = _usage(gen.prompt_tokens, gen.completion_tokens)
        return out

    def stream(self, body: Any, env: Env) -> StreamPlan:
        gen = self._generate(body, env)
        start = self._message(body, env)
        start["usage"] = _usage(gen.prompt_tokens, 1)
        head = [
            _event("message_start", {"type": "message_start", "message": start}),
            _event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            _event("ping", {"type": "ping"}),
        ]
        content = [
            _event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
            for piece in gen.pieces(env.chunks)
        ]
        tail = [
            _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": _stop(gen), "stop_sequence": None},
                    "usage": {"output_tokens": gen.completion_tokens},
                },
            ),
            _event("message_stop", {"type": "message_stop"}),
        ]
        return StreamPlan(head, content, tail)

    def error_body(self, problem: Problem) -> dict[str, Any]:
        status = problem.status
        kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        message = problem.message or DEFAULT_MESSAGES.get(status, "Internal server error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def stream_error(self, problem: Problem) -> bytes:
        return _event("error", self.error_body(problem))

    def error_headers(self, status: int, retry_after: float | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if retry_after is not None:
            seconds = retry_after
            headers["retry-after"] = (
                str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))
            )
        if status == 429:
            reset = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
                seconds=1.0 if retry_after is None else retry_after
            )
            headers["anthropic-ratelimit-requests-limit"] = "4000"
            headers["anthropic-ratelimit-requests-remaining"] = "0"
            headers["anthropic-ratelimit-requests-reset"] = reset.strftime("%Y-%m-%dT%H:%M:%SZ")
        return headers


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


class Models(Messages):
    """``GET /v1/models`` when the client sends ``anthropic-version``."""

    id_format = None

    def check(self, body: Any, env: Env) -> Problem | None:
        return None

    def answer(self, body: Any, env: Env) -> dict[str, Any]:
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
            for m in env.models
        ]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return {"data": data, "has_more": False, "first_id": first, "last_id": last}
