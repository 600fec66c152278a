"""Attribute names and values: the GenAI semantic conventions, and Sluice's own ``sluice.*``.

Names come from ``opentelemetry-semantic-conventions`` where it has them. Values that come
from callers (model names) are bounded on metrics, where each distinct value is a series.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes import error_attributes, server_attributes

OPERATION_NAME: Final = gen_ai.GEN_AI_OPERATION_NAME
PROVIDER_NAME: Final = gen_ai.GEN_AI_PROVIDER_NAME
REQUEST_MODEL: Final = gen_ai.GEN_AI_REQUEST_MODEL
REQUEST_STREAM: Final = gen_ai.GEN_AI_REQUEST_STREAM
RESPONSE_MODEL: Final = gen_ai.GEN_AI_RESPONSE_MODEL
RESPONSE_TIME_TO_FIRST_CHUNK: Final = gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
TOKEN_TYPE: Final = gen_ai.GEN_AI_TOKEN_TYPE
USAGE_INPUT_TOKENS: Final = gen_ai.GEN_AI_USAGE_INPUT_TOKENS
USAGE_OUTPUT_TOKENS: Final = gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS
INPUT_MESSAGES: Final = "gen_ai.input.messages"  # opt-in content (not in the package yet)
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
SERVER_ADDRESS: Final = server_attributes.SERVER_ADDRESS
SERVER_PORT: Final = server_attributes.SERVER_PORT
ERROR_TYPE: Final = error_attributes.ERROR_TYPE
HTTP_STATUS: Final = "http.response.status_code"

TOKEN_INPUT: Final = gen_ai.GenAiTokenTypeValues.INPUT.value
TOKEN_OUTPUT: Final = gen_ai.GenAiTokenTypeValues.OUTPUT.value

# Sluice's own dimensions (docs/observability.md).
SLUICE_PROVIDER: Final = "sluice.provider.name"  # the policy's provider name
SLUICE_OPERATION: Final = "sluice.operation"  # the business operation (X-LLM-Operation)
SLUICE_ATTEMPT: Final = "sluice.attempt"  # 1 for the first upstream attempt of a call
SLUICE_CACHE_RESULT: Final = "sluice.cache.result"  # hit, miss, bypass
SLUICE_RETRY_REASON: Final = "sluice.retry.reason"
SLUICE_RETRY_DELAY: Final = "sluice.retry.delay_s"
SLUICE_FALLBACK_FROM: Final = "sluice.fallback.from"
SLUICE_FALLBACK_TO: Final = "sluice.fallback.to"
SLUICE_QUEUE_WAIT: Final = "sluice.queue.wait_s"
SLUICE_QUEUE_PRIORITY: Final = "sluice.queue.priority"
SLUICE_BUDGET: Final = "sluice.budget.name"
SLUICE_BUDGET_REASON: Final = "sluice.budget.reason"
SLUICE_BUDGET_ENFORCEMENT: Final = "sluice.budget.enforcement"
SLUICE_BATCH_CALLS: Final = "sluice.batch.calls"  # callers merged into one embeddings call
SLUICE_COST: Final = "sluice.cost_usd"

# The route a call came in on -> the conventions' operation name (never X-LLM-Operation).
OPERATION_BY_ROUTE: Final[dict[str, str]] = {
    "chat": gen_ai.GenAiOperationNameValues.CHAT.value,
    "messages": gen_ai.GenAiOperationNameValues.CHAT.value,
    "completions": gen_ai.GenAiOperationNameValues.TEXT_COMPLETION.value,
    "embeddings": gen_ai.GenAiOperationNameValues.EMBEDDINGS.value,
}
# Not a GenAI operation: the span is kept (trace continuity), no GenAI metric is recorded.
LIST_MODELS: Final = "list_models"

# A provider's wire format -> the conventions' well-known provider name. An
# openai-compatible server speaks OpenAI's format, which is what the attribute names.
PROVIDER_BY_FAMILY: Final[dict[str, str]] = {
    "openai": gen_ai.GenAiProviderNameValues.OPENAI.value,
    "anthropic": gen_ai.GenAiProviderNameValues.ANTHROPIC.value,
}

MAX_DISTINCT: Final = 200  # model values per attribute on metrics; then "other"
OTHER: Final = "other"


def operation_name(route_kind: str) -> str:
    return OPERATION_BY_ROUTE.get(route_kind, LIST_MODELS)


def server_of(base_url: str) -> tuple[str, int] | None:
    """``server.address`` and ``server.port`` of a provider's base URL."""
    parts = urlsplit(base_url)
    if not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


class BoundedValues:
    """The first ``limit`` distinct values pass; later new ones become ``other``."""

    def __init__(self, limit: int = MAX_DISTINCT) -> None:
        self._seen: set[str] = set()
        self._limit = limit

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) < self._limit:
            self._seen.add(value)
            return value
        return OTHER
