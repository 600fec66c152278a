"""OpenRouter as a named provider type: its base URL, key and attribution headers, vendor-prefixed
model names (``gpt-4o`` goes out as ``openai/gpt-4o``), priced like the vendor's own model."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

from sluice_sidecar.contract.model import ProviderSpec
from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import Fail, SimulatedLLM

MESSAGES = [{"role": "user", "content": "Route me"}]
MILLION = Decimal(1_000_000)


def openrouter(sim: SimulatedLLM, **extra) -> dict:
    return {
        "name": "openrouter",
        "type": "openrouter",
        "baseUrl": sim.openai_base_url,  # the simulator stands in for openrouter.ai
        "apiKeyEnv": "OPENROUTER_API_KEY",
        "headers": {"HTTP-Referer": "https://studio.example.com", "X-Title": "Studio"},
    } | extra


def client(sidecar: SidecarHandle) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-app", max_retries=0)


def test_openrouter_defaults_to_its_own_api_root() -> None:
    spec = ProviderSpec(name="openrouter", type="openrouter")
    assert spec.effective_base_url == "https://openrouter.ai/api/v1"
    assert spec.api_family == "openai"


@pytest.fixture(autouse=True)
def openrouter_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-test")


async def test_openrouter_gets_vendor_names_its_key_and_attribution_headers(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    sidecar = await sidecar_factory(policy(providers=[openrouter(llm)]))
    async with client(sidecar) as c:
        answer = await c.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=50)
        await c.chat.completions.create(model="claude-3-5-haiku", messages=MESSAGES)
        await c.chat.completions.create(model="mistralai/mixtral-8x7b", messages=MESSAGES)
    sent = llm.requests
    assert [r.json["model"] for r in sent] == [
        "openai/gpt-4o",
        "anthropic/claude-3-5-haiku",
        "mistralai/mixtral-8x7b",  # already a vendor name: as it came
    ]
    first = sent[0]
    assert first.headers["Authorization"] == "Bearer sk-or-v1-test"
    assert first.headers["HTTP-Referer"] == "https://studio.example.com"
    assert first.headers["X-Title"] == "Studio"
    assert first.json["max_tokens"] == 50  # OpenRouter's field, not max_completion_tokens
    _, report = await sidecar.admin("GET", "/admin/usage")
    row = next(r for r in report["series"] if r["model"] == "gpt-4o")
    assert row["provider"] == "openrouter"
    assert answer.usage is not None
    expected = (answer.usage.prompt_tokens * Decimal("2.50")) / MILLION + (
        answer.usage.completion_tokens * Decimal("10.00")
    ) / MILLION
    assert Decimal(row["costUSD"]) == expected  # the vendor's price for openai/gpt-4o


async def test_openrouter_as_a_fallback_behind_the_vendor(llm_factory, sidecar_factory) -> None:
    primary = await llm_factory(name="openai")
    fallback = await llm_factory(name="openrouter-sim")
    primary.enqueue(*[Fail(503)] * 4)
    sidecar = await sidecar_factory(
        policy(
            providers=[provider_for(primary, "openai"), openrouter(fallback)],
            retry={"maxAttempts": 1, "baseDelayMs": 1, "maxDelayMs": 1},
        )
    )
    async with client(sidecar) as c:
        answer = await c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert answer.choices[0].message.content
    assert primary.requests[-1].json["model"] == "gpt-4o-mini"
    assert fallback.requests[-1].json["model"] == "openai/gpt-4o-mini"


async def test_model_map_still_names_the_openrouter_model(
    llm: SimulatedLLM, sidecar_factory
) -> None:
    provider = openrouter(llm, modelMap={"house": "meta-llama/llama-3.1-70b-instruct"})
    sidecar = await sidecar_factory(policy(providers=[provider]))
    async with client(sidecar) as c:
        await c.chat.completions.create(model="house", messages=MESSAGES)
    assert llm.requests[-1].json["model"] == "meta-llama/llama-3.1-70b-instruct"
