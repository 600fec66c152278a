"""Stage-level test helpers: a runtime from a policy and a bare ``Call`` through it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sluice_sidecar.contract import LlmPolicy, compile_policies
from sluice_sidecar.pipeline.call import Call
from sluice_sidecar.pipeline.runtime import Runtime, build_runtime


def runtime_of(document: dict[str, Any], secrets_dir: Path) -> Runtime:
    config = compile_policies([LlmPolicy.model_validate(document)])
    return build_runtime(config, secrets_dir=secrets_dir, environ={})


def chat_call(runtime: Runtime, model: str = "m", **body: Any) -> Call:
    """A non-streamed chat call for ``model`` under ``runtime``, its deadline from now."""
    operation = runtime.operation(None)
    return Call(
        api="openai",
        kind="chat",
        path="/v1/chat/completions",
        query="",
        operation=operation,
        session=None,
        model=model,
        stream=False,
        body={"model": model, **body},
        raw_body=None,
        client_headers={},
        runtime=runtime,
        deadline=asyncio.get_running_loop().time() + operation.timeout_s,
    )
