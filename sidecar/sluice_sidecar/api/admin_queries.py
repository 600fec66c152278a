"""The admin API's query parameters as pydantic models: validated by the handlers in ``admin``,
described by ``admin_openapi`` from the same models, so the document and the checks agree.

Every parameter has a type and a range; a value outside them is the caller's error (400 with
the parameter and the reason), never an exception deeper in the sidecar.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sluice_sidecar.contract.base import NAME_PATTERN
from sluice_sidecar.contract.model import OPERATION_PATTERN, config_problems

# Ten times the largest context window offered today: any larger count is a mistake, and
# bounding it keeps the prediction's float arithmetic finite.
MAX_PROMPT_TOKENS = 100_000_000
# Model names are chosen by callers; a reset names one the sidecar has seen.
MAX_MODEL_CHARS = 512


class Query(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class EstimateQuery(Query):
    provider: str = Field(pattern=NAME_PATTERN, description="Provider name, as configured.")
    operation: str = Field(pattern=OPERATION_PATTERN, description="Operation type.")
    prompt_tokens: int = Field(
        alias="promptTokens",
        ge=0,
        le=MAX_PROMPT_TOKENS,
        description="Prompt tokens of the call to predict.",
    )


class CircuitResetQuery(Query):
    provider: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="Only this provider's breakers."
    )
    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_MODEL_CHARS,
        description="Only the breakers of this model.",
    )


class CircuitTransitionsQuery(Query):
    after: int = Field(
        default=0,
        ge=0,
        le=2**63 - 1,
        description="Only the state changes numbered above this (the last one the caller saw).",
    )


class QueryRejected(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


Q = TypeVar("Q", bound=Query)


def parse_query(model: type[Q], query: Mapping[str, str]) -> Q:
    """Validate a query string (the first value of a repeated name counts)."""
    first = {name: query[name] for name in query}
    try:
        return model.model_validate(first)
    except ValidationError as error:
        raise QueryRejected(config_problems(error)) from error
