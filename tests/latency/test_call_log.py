"""One "completed" log line per call, with the telemetry fields and nothing secret."""

from __future__ import annotations

import json
import logging

import openai
import pytest

from sluice_sidecar.observability.logs import JsonFormatter
from tests.support.sidecar import SidecarHandle
from tests.support.simulator import Fail, SimulatedLLM

PROMPT = "The secret plot twist is that the butler did it"
MESSAGES = [{"role": "user", "content": PROMPT}]


def completed(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "sluice.calls"]


async def test_each_call_logs_one_completed_line_with_its_telemetry(
    sidecar: SidecarHandle, llm: SimulatedLLM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sluice.calls")
    llm.enqueue(Fail(503))
    async with openai.AsyncOpenAI(
        base_url=sidecar.openai_url, api_key="sk-app-secret-key", max_retries=0
    ) as c:
        await c.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            extra_headers={"X-LLM-Operation": "ScriptGeneration", "X-LLM-Session": "run-7"},
        )
    [record] = completed(caplog)
    fields = record.call  # type: ignore[attr-defined]
    assert fields["provider"] == "sim" and fields["operation"] == "ScriptGeneration"
    assert fields["model"] == "gpt-4o" and fields["status"] == 200 and fields["success"]
    assert fields["input_tokens"] > 0 and fields["output_tokens"] > 0
    assert fields["retries"] == 1 and fields["attempts"] == 2
    assert fields["cache_hit"] is False and fields["session"] == "run-7"
    assert fields["latency_ms"] >= 0 and fields["cost_usd"] is not None
    message = record.getMessage()
    assert message.startswith("LLM Operation: sim ScriptGeneration completed in ")
    assert "retries: 1" in message and "session: run-7" in message
    line = JsonFormatter().format(record)
    logged = json.loads(line)
    assert logged["message"] == message and logged["level"] == "info"
    assert {k: logged[k] for k in fields} == fields  # each telemetry field a JSON key
    for text in (message, line):
        assert "sk-app-secret-key" not in text and "butler" not in text


async def test_a_failed_call_logs_failed_with_its_status(
    sidecar: SidecarHandle, llm: SimulatedLLM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sluice.calls")
    llm.enqueue(Fail(401, message="bad key"))
    async with openai.AsyncOpenAI(
        base_url=sidecar.openai_url, api_key="sk-app", max_retries=0
    ) as c:
        with pytest.raises(openai.AuthenticationError):
            await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    [record] = completed(caplog)
    assert record.call["status"] == 401 and not record.call["success"]  # type: ignore[attr-defined]
    assert " failed in " in record.getMessage()
