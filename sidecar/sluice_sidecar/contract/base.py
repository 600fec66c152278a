"""The common base of every configuration model, and the money type.

Kept apart from ``model`` so the economics sections (``config.economics``) and the policy model
share one base without importing each other in a circle.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic.alias_generators import to_camel

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"

# Amounts of US dollars. Held as Decimal (never float arithmetic); YAML/JSON numbers and
# strings are accepted, JSON output is a number so CRD schemas stay plain ``type: number``.
Money = Annotated[
    Decimal,
    Field(ge=0, allow_inf_nan=False),
    PlainSerializer(float, return_type=float, when_used="json"),
    WithJsonSchema({"type": "number", "minimum": 0}),
]


class Spec(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )
