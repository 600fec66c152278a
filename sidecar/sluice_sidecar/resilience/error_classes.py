"""Finer classes of upstream failures, for a policy per class (``errorPolicy``).

The transport says transient or permanent (``errors.classify_upstream_status``); this module
names what kind of failure it was, from the status, the transport's reason and, for a 400, the
provider's own error code or message (OpenAI ``context_length_exceeded``, Anthropic "prompt is
too long", content filters). The retry, fallback and circuit stages look the class up in the
configuration's ``errorPolicy`` to decide whether to retry, move to the next provider, and count
the failure against the breaker. The defaults are what the transient/permanent split did before:
every transient class is retried, falls back and counts; no permanent class does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sluice_sidecar.contract.model import ErrorClassPolicy, ErrorPolicySpec
from sluice_sidecar.errors import TransientUpstreamError, UpstreamError

# The class names are the fields of ``ErrorPolicySpec`` (snake_case here, camelCase in YAML).
ErrorClass = Literal[
    "rate_limit",
    "overload",
    "timeout",
    "connection",
    "server_error",
    "invalid_answer",
    "context_length",
    "content_filter",
    "auth",
    "other",
]
TRANSIENT_CLASSES: tuple[ErrorClass, ...] = (
    "rate_limit",
    "overload",
    "timeout",
    "connection",
    "server_error",
    "invalid_answer",
)
PERMANENT_CLASSES: tuple[ErrorClass, ...] = ("context_length", "content_filter", "auth", "other")


@dataclass(frozen=True, slots=True)
class ClassPolicy:
    retry: bool
    fallback: bool
    open_breaker: bool


ErrorPolicy = Mapping[ErrorClass, ClassPolicy]


def resolve(spec: ErrorPolicySpec) -> dict[ErrorClass, ClassPolicy]:
    """Every class's policy, its unset fields from the class's default (once per configuration)."""
    resolved: dict[ErrorClass, ClassPolicy] = {}
    for name in TRANSIENT_CLASSES + PERMANENT_CLASSES:
        default = name in TRANSIENT_CLASSES
        given: ErrorClassPolicy = getattr(spec, name) or ErrorClassPolicy()
        resolved[name] = ClassPolicy(
            retry=default if given.retry is None else given.retry,
            fallback=default if given.fallback is None else given.fallback,
            open_breaker=default if given.open_breaker is None else given.open_breaker,
        )
    return resolved


_BY_STATUS: dict[int, ErrorClass] = {
    429: "rate_limit",
    503: "overload",
    529: "overload",
    408: "timeout",
    504: "timeout",
    500: "server_error",
    502: "server_error",
    401: "auth",
    403: "auth",
}
_BY_REASON: dict[str, ErrorClass] = {
    "connection error": "connection",
    "attempt timeout": "timeout",
    "stream idle": "timeout",
}
_CONTEXT_LENGTH = ("context_length_exceeded", "maximum context length", "prompt is too long")
_CONTENT_FILTER = ("content_filter", "content_policy", "content management policy")


def error_class(error: UpstreamError) -> ErrorClass:
    status = error.upstream_status
    if status is not None and status in _BY_STATUS:
        return _BY_STATUS[status]
    if error.reason in _BY_REASON:
        return _BY_REASON[error.reason]
    if status is not None and 400 <= status < 500:
        text = (error.body or b"")[:4096].decode("utf-8", "replace").lower()
        if any(marker in text for marker in _CONTEXT_LENGTH):
            return "context_length"
        if any(marker in text for marker in _CONTENT_FILTER):
            return "content_filter"
    if isinstance(error, TransientUpstreamError):
        return "server_error" if status is not None else "invalid_answer"
    return "other"
