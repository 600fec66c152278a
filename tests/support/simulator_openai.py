"""The OpenAI wire format for the simulated upstream: chat, legacy completions, embeddings, models.

Pure builders of JSON bodies and SSE frames, called by the server in
``tests.support.simulator``. Field names and shapes follow what the official ``openai`` SDK
parses, including streamed usage (``stream_options.include_usage``) and base64 embeddings (the
SDK's default ``encoding_format``).
"""

from __future__ import annotations

from typing import Any

from tests.support.simulator_common import (
    Env,
    Generation,
    Problem,
    StreamPlan,
    content_text,
    count_words,
    dumps,
    embedding,
    embedding_base64,
    generate,
    renew,
)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_exceeded",
}
ERROR_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
DEFAULT_MESSAGES = {
    400: "Invalid request.",
    401: "Incorrect API key provided.",
    403: "You are not allowed to access this resource.",
    404: "The requested resource does not exist.",
    429: "Rate limit reached for requests.",
}
DONE = b"data: [DONE]\n\n"


def _frame(obj: dict[str, Any]) -> bytes:
    return b"data: " + dumps(obj) + b"\n\n"


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _finish(gen: Generation) -> str:
    return "length" if gen.truncated else "stop"


def _require(body: Any, env: Env, *fields: str) -> Problem | None:
    if not isinstance(body, dict):
        return Problem(400, "We could not parse the JSON body of your request.")
    if not body.get("model"):
        return Problem(400, "you must provide a model parameter", "model")
    for field in fields:
        if field not in body:
            message = f"Missing required parameter: '{field}'."
            return Problem(400, message, field, "missing_required_parameter")
    if env.allowed is not None and body["model"] not in env.allowed:
        message = f"The model `{body['model']}` does not exist or you do not have access to it."
        return Problem(404, message, None, "model_not_found")
    return None


class OpenAIRoute:
    """The OpenAI error format, shared by every OpenAI endpoint."""

    id_format: str | None = None

    def renew(self, answer: dict[str, Any], env: Env) -> dict[str, Any]:
        return renew(answer, env, self.id_format)

    def error_body(self, problem: Problem) -> dict[str, Any]:
        status = problem.status
        kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        message = problem.message or DEFAULT_MESSAGES.get(status, "The server had an error.")
        code = problem.code or ERROR_CODES.get(status)
        return {"error": {"message": message, "type": kind, "param": problem.param, "code": code}}

    def error_headers(self, status: int, retry_after: float | None) -> dict[str, str]:
        if status != 429:
            return {} if retry_after is None else {"retry-after": _seconds(retry_after)}
        reset = 1.0 if retry_after is None else retry_after
        headers = {
            "x-ratelimit-limit-requests": "10000",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": f"{_seconds(reset)}s",
        }
        if retry_after is not None:
            headers["retry-after"] = _seconds(retry_after)
        return headers

    def stream(self, body: Any, env: Env) -> StreamPlan:
        raise NotImplementedError

    def stream_error(self, problem: Problem) -> bytes:
        return _frame(self.error_body(problem))


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class ChatCompletions(OpenAIRoute):
    """``POST /v1/chat/completions``."""

    id_format = "chatcmpl-{:024x}"

    def check(self, body: Any, env: Env) -> Problem | None:
        return _require(body, env, "messages")

    def _generate(self, body: dict[str, Any], env: Env) -> Generation:
        messages = body["messages"] if isinstance(body["messages"], list) else []
        texts = [content_text(m.get("content")) for m in messages if isinstance(m, dict)]
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        question = content_text(users[-1].get("content")) if users else ""
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        return generate(env, question, count_words(*texts), limit)

    def _base(self, body: dict[str, Any], env: Env, kind: str) -> dict[str, Any]:
        return {
            "id": self.id_format.format(env.seq),
            "object": kind,
            "created": env.created,
            "model": body["model"],
            "service_tier": "default",
            "system_fingerprint": "fp_sim",
        }

    def answer(self, body: Any, env: Env) -> dict[str, Any]:
        gen = self._generate(body, env)
        message = {"role": "assistant", "content": gen.text, "refusal": None, "annotations": []}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(gen)}
        out = self._base(body, env, "chat.completion")
        out["choices"] = [choice]
        out["usage"] = _usage(gen.prompt_tokens, gen.completion_tokens)
        return out

    def stream(self, body: Any, env: Env) -> StreamPlan:
        gen = self._generate(body, env)
        base = self._base(body, env, "chat.completion.chunk")
        usage = _include_usage(body)
        if usage:
            base["usage"] = None

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return _frame({**base, "choices": [choice]})

        head = [chunk({"role": "assistant", "content": "", "refusal": None})]
        content = [chunk({"content": piece}) for piece in gen.pieces(env.chunks)]
        tail = [chunk({}, _finish(gen))]
        if usage:
            counts = _usage(gen.prompt_tokens, gen.completion_tokens)
            tail.append(_frame({**base, "choices": [], "usage": counts}))
        tail.append(DONE)
        return StreamPlan(head, content, tail)


class Completions(OpenAIRoute):
    """``POST /v1/completions`` (legacy): one choice per prompt."""

    id_format = "cmpl-{:024x}"

    def check(self, body: Any, env: Env) -> Problem | None:
        return _require(body, env, "prompt")

    def _generate(self, body: dict[str, Any], env: Env) -> list[Generation]:
        limit = body.get("max_tokens", 16)
        return [generate(env, p, count_words(p), limit) for p in _texts(body["prompt"])]

    def _base(self, body: dict[str, Any], env: Env) -> dict[str, Any]:
        return {
            "id": self.id_format.format(env.seq),
            "object": "text_completion",
            "created": env.created,
            "model": body["model"],
            "system_fingerprint": "fp_sim",
        }

    def answer(self, body: Any, env: Env) -> dict[str, Any]:
        gens = self._generate(body, env)
        out = self._base(body, env)
        out["choices"] = [
            {"text": g.text, "index": i, "logprobs": None, "finish_reason": _finish(g)}
            for i, g in enumerate(gens)
        ]
        out["usage"] = _total_usage(gens)
        return out

    def stream(self, body: Any, env: Env) -> StreamPlan:
        gens = self._generate(body, env)
        base = self._base(body, env)
        usage = _include_usage(body)
        if usage:
            base["usage"] = None

        def chunk(index: int, text: str, finish: str | None = None) -> bytes:
            choice = {"text": text, "index": index, "logprobs": None, "finish_reason": finish}
            return _frame({**base, "choices": [choice]})

        content = [chunk(i, p) for i, g in enumerate(gens) for p in g.pieces(env.chunks)]
        tail = [chunk(i, "", _finish(g)) for i, g in enumerate(gens)]
        if usage:
            tail.append(_frame({**base, "choices": [], "usage": _total_usage(gens)}))
        tail.append(DONE)
        return StreamPlan([], content, tail)


def _total_usage(gens: list[Generation]) -> dict[str, Any]:
    prompt = sum(g.prompt_tokens for g in gens)
    completion = sum(g.completion_tokens for g in gens)
    total = prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def _texts(value: Any) -> list[str]:
    """Prompts or inputs as texts: a string, strings, a token array or token arrays.

    A token array becomes its numbers joined by spaces, so each token counts as one word.
    """
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [" ".join(map(str, value))]
    if isinstance(value, list):
        return [v if isinstance(v, str) else " ".join(map(str, v)) for v in value]
    return [str(value)]


class Embeddings(OpenAIRoute):
    """``POST /v1/embeddings``: deterministic unit vectors, float or base64."""

    def check(self, body: Any, env: Env) -> Problem | None:
        problem = _require(body, env, "input")
        if problem is None and not _texts(body["input"]):
            return Problem(400, "'$.input' is invalid.", "input")
        return problem

    def answer(self, body: Any, env: Env) -> dict[str, Any]:
        texts = _texts(body["input"])
        dims = body.get("dimensions")
        dims = dims if isinstance(dims, int) and dims > 0 else 8
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vec = embedding(text, dims)
            data.append(
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": embedding_base64(vec) if as_base64 else list(vec),
                }
            )
        tokens = count_words(*texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "data": data, "model": body["model"], "usage": usage}


class Models(OpenAIRoute):
    """``GET /v1/models``."""

    def check(self, body: Any, env: Env) -> Problem | None:
        return None

    def answer(self, body: Any, env: Env) -> dict[str, Any]:
        data = [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": env.name}
            for m in env.models
        ]
        return {"object": "list", "data": data}
