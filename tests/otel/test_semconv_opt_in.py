"""``OTEL_SEMCONV_STABILITY_OPT_IN``: Sluice emits the latest GenAI conventions with and without
``gen_ai_latest_experimental`` (it has no older GenAI output to keep), read from the collector."""

from __future__ import annotations

import anthropic
import pytest

from tests.otel.collector import NEEDS_COLLECTOR, Collector, attributes_of, data_points
from tests.support.sidecar import (
    anthropic_provider_for,
    close_test_sidecar,
    compile_policy,
    policy,
    start_test_sidecar,
)
from tests.support.simulator import SimulatedLLM
from tests.support.waiting import wait_until

pytestmark = NEEDS_COLLECTOR
# gen_ai.system: the provider attribute of the conventions up to v1.36.0, replaced by
# gen_ai.provider.name; the opt-in's "old version" would carry it.
OLD_PROVIDER_ATTRIBUTE = "gen_ai.system"


@pytest.mark.parametrize(
    "opt_in", [None, "gen_ai_latest_experimental", "http,gen_ai_latest_experimental"]
)
async def test_the_latest_genai_conventions_are_emitted_with_or_without_the_opt_in(
    opt_in: str | None, collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    if opt_in is None:
        monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
    else:
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", opt_in)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.http_endpoint)
    async with SimulatedLLM() as llm:
        document = policy(providers=[anthropic_provider_for(llm, "claude")])
        sidecar = await start_test_sidecar(
            compile_policy(document), otel_traces="http/protobuf", otel_metrics="http/protobuf"
        )
        try:
            async with anthropic.AsyncAnthropic(base_url=sidecar.anthropic_url, api_key="k") as app:
                await app.messages.create(
                    model="claude-sonnet-4-5",
                    max_tokens=20,
                    messages=[{"role": "user", "content": "hello"}],
                )
        finally:
            await close_test_sidecar(sidecar)  # flushes the spans and the last metrics
    await wait_until(lambda: collector.spans() and collector.metrics(), limit_s=15)

    durations = [m for m in collector.metrics() if m["name"] == "gen_ai.client.operation.duration"]
    found = [attributes_of(p) for m in durations for p in data_points(m)]
    assert found
    found += [attributes_of(s) for s in collector.spans()]
    assert all(item["gen_ai.provider.name"] == "anthropic" for item in found)
    assert all(OLD_PROVIDER_ATTRIBUTE not in item for item in found)
