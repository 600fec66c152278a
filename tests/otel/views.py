"""Plain stand-ins for the pipeline's Call, Provider and Usage, for the package-level tests.

They carry only what ``sluice_sidecar.observability.otel`` reads (its ``*View`` protocols); the
tests of the wired sidecar (phase 2) use the real objects through a real sidecar.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

APP_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
APP_SPAN_ID = "00f067aa0ba902b7"
APP_TRACEPARENT = f"00-{APP_TRACE_ID}-{APP_SPAN_ID}-01"


@dataclass(frozen=True)
class Operation:
    name: str = "summarize"


@dataclass
class CallStandIn:
    api: str = "openai"
    kind: str = "chat"
    model: str | None = "gpt-4o-mini"
    stream: bool = False
    body: dict[str, Any] | None = None
    client_headers: dict[str, str] = field(default_factory=dict)
    operation: Operation = field(default_factory=Operation)


@dataclass(frozen=True)
class ProviderStandIn:
    name: str = "primary"
    family: str = "openai"
    base_url: str = "http://127.0.0.1:9999/v1"


@dataclass(frozen=True)
class UsageStandIn:
    input_tokens: int = 12
    output_tokens: int = 34
