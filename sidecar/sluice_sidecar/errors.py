"""The sidecar's one error hierarchy, translated into each caller's API format at the boundary.

::

    SluiceError                      status, error type, message; rendered by ``render_error``
    ├── RequestError                 the caller's request is wrong: never retried
    │   ├── MalformedRequest         400 (bad JSON, missing model, unknown operation)
    │   │   └── LimitExceeded        400: a boundary limit (nesting, name or header length)
    │   │       └── BodyTimedOut     408: the body did not arrive in time
    │   ├── RouteNotFound            404
    │   ├── BodyTooLarge             413
    │   └── NoProviderForModel       400
    ├── Refused                      the sidecar protects the provider: answered at once
    │   ├── CircuitOpen              503 + Retry-After (every candidate provider is open)
    │   ├── BulkheadFull             503 + Retry-After
    │   ├── KeyMissing               503: the provider's key Secret is not mounted (yet)
    │   └── NotConfigured            503: no configuration loaded yet
    ├── QueueFull                    429 + Retry-After: concurrency limit reached and the
    │                                priority queue is full or the wait too long
    ├── BudgetExceeded               429 + Retry-After (period reset), type budget_exceeded;
    │                                ``details`` names the budget, limit, spent, reset time
    ├── DeadlineExceeded             504 (the operation's single deadline, retries included)
    └── UpstreamError                the provider answered badly or not at all
        ├── TransientUpstreamError   retried: 429, 500, 502, 503, 504, connection errors,
        │                            upstream timeouts, invalid JSON, broken streams
        └── PermanentUpstreamError   not retried: 400, 401, 403, 404, 422 and the rest;
                                     the provider's own body is relayed unchanged

Upstream HTTP statuses are mapped here, in ``classify_upstream_status``, and nowhere else.
"""

from __future__ import annotations

from typing import Literal

ApiFamily = Literal["openai", "anthropic"]

TRANSIENT_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


class SluiceError(Exception):
    """Base of every error the sidecar answers with; carries what the caller sees."""

    status: int = 500
    openai_type: str = "server_error"
    anthropic_type: str = "api_error"
    code: str = "internal_error"

    details: dict[str, object] | None = None  # extra fields of the rendered error

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class RequestError(SluiceError):
    status = 400
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    code = "invalid_request"


class MalformedRequest(RequestError):
    def __init__(self, message: str, *, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.code = code


class LimitExceeded(MalformedRequest):
    """A request refused by one of the boundary's limits (400); ``limit`` labels
    ``sluice_limits_hit_total`` (docs/sidecar.md "Limits")."""

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message, code=f"{limit}_exceeded")
        self.limit = limit


class BodyTimedOut(LimitExceeded):
    """The body did not arrive within ``body_timeout_s`` after the headers (408)."""

    status = 408

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            f"the request body did not arrive within {timeout_s:g}s", limit="body_time"
        )


class RouteNotFound(RequestError):
    status = 404
    anthropic_type = "not_found_error"
    code = "not_found"


class BodyTooLarge(RequestError):
    status = 413
    anthropic_type = "request_too_large"
    code = "request_too_large"


class NoProviderForModel(RequestError):
    code = "model_not_routed"


class Refused(SluiceError):
    status = 503
    openai_type = "server_error"
    anthropic_type = "overloaded_error"


class CircuitOpen(Refused):
    code = "circuit_open"


class BulkheadFull(Refused):
    code = "concurrency_limit"


class NotConfigured(Refused):
    code = "not_configured"


class KeyMissing(Refused):
    """The provider's apiKeySecretRef is not mounted in this Pod: the call moves to the next
    provider, or is answered at once (never sent without the key, never the app's key)."""

    code = "provider_key_missing"


class QueueFull(SluiceError):
    """The sidecar's own concurrency limit: no slot within the queue's bounds."""

    status = 429
    openai_type = "rate_limit_error"
    anthropic_type = "rate_limit_error"
    code = "queue_full"


class BudgetExceeded(SluiceError):
    """A hard budget would be overspent by this call: never retried by the sidecar."""

    status = 429
    openai_type = "budget_exceeded"
    anthropic_type = "budget_exceeded"
    code = "budget_exceeded"

    def __init__(
        self, message: str, *, retry_after: float | None, details: dict[str, object]
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.details = details


class DeadlineExceeded(SluiceError):
    status = 504
    openai_type = "timeout_error"
    anthropic_type = "timeout_error"
    code = "timeout"


class UpstreamError(SluiceError):
    """The provider failed. ``reason`` is a short phrase for logs ("rate limit exceeded")."""

    status = 502
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        upstream_status: int | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        retry_after: float | None = None,
        sent: bool = True,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.reason = reason
        self.upstream_status = upstream_status
        self.sent = sent  # False: no connection was made, nothing reached the provider
        self.body = body
        self.headers = headers or {}
        if upstream_status is not None:
            self.status = upstream_status


class TransientUpstreamError(UpstreamError):
    """Worth another attempt (possibly at another provider)."""


class PermanentUpstreamError(UpstreamError):
    """Retrying cannot help: the provider rejected this request."""


def classify_upstream_status(status: int) -> type[UpstreamError]:
    return TransientUpstreamError if status in TRANSIENT_STATUSES else PermanentUpstreamError


STATUS_REASONS = {
    429: "rate limit exceeded",
    500: "server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
    529: "provider overloaded",
    408: "request timeout",
}


def reason_for_status(status: int) -> str:
    return STATUS_REASONS.get(status, f"HTTP {status}")


def render_error(error: SluiceError, api: ApiFamily) -> dict[str, object]:
    """The error body in the caller's own API format."""
    extra = error.details or {}
    if api == "anthropic":
        body = {"type": error.anthropic_type, "message": error.message, **extra}
        return {"type": "error", "error": body}
    return {
        "error": {
            "message": error.message,
            "type": error.openai_type,
            "param": None,
            "code": error.code,
            **extra,
        }
    }
