"""Prices through a real sidecar: the reference designs' models, vendor-prefixed names, and a
price table file that the configuration names (a mounted ConfigMap), dated in /admin/usage."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path

import openai
import pytest

from sluice_sidecar.economics import pricing
from sluice_sidecar.economics.pricing import PRICES_AS_OF
from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import SimulatedLLM

MESSAGES = [{"role": "user", "content": "Price this call"}]
MILLION = Decimal(1_000_000)


def client(sidecar: SidecarHandle) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-app", max_retries=0)


def price_file(tmp_path: Path, as_of: str = "2026-12-01", **models: dict) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(json.dumps({"asOf": as_of, "models": models}))
    return path


async def cost_of(sidecar: SidecarHandle, model: str) -> tuple[Decimal, int, int]:
    async with client(sidecar) as c:
        answer = await c.chat.completions.create(model=model, messages=MESSAGES)
    assert answer.usage is not None
    _, report = await sidecar.admin("GET", "/admin/usage")
    row = next(r for r in report["series"] if r["model"] == model)
    return Decimal(row["costUSD"]), answer.usage.prompt_tokens, answer.usage.completion_tokens


@pytest.mark.parametrize(
    ("model", "input_per_1m", "output_per_1m"),
    [
        ("claude-3-opus-20240229", "15.00", "75.00"),
        ("claude-3-sonnet-20240229", "3.00", "15.00"),
        ("gemini-1.0-pro", "0.50", "1.50"),
        ("openai/gpt-4o", "2.50", "10.00"),  # as OpenRouter spells it
        ("anthropic/claude-3.5-sonnet", "3.00", "15.00"),
        ("llama3.1", "0", "0"),  # Ollama without a tag: local, free
    ],
)
async def test_reference_models_and_vendor_names_are_priced(
    sidecar: SidecarHandle, model: str, input_per_1m: str, output_per_1m: str
) -> None:
    cost, prompt, completion = await cost_of(sidecar, model)
    expected = (prompt * Decimal(input_per_1m) + completion * Decimal(output_per_1m)) / MILLION
    assert cost == expected
    _, report = await sidecar.admin("GET", "/admin/usage")
    assert report["totals"]["unpricedCalls"] == 0


async def test_price_file_named_by_the_policy_prices_calls_and_shows_its_date(
    llm: SimulatedLLM, sidecar_factory, tmp_path: Path
) -> None:
    path = price_file(
        tmp_path,
        **{
            "house-model": {"inputPer1M": "1000000", "outputPer1M": "0"},
            "gpt-4o": {"inputPer1M": "0", "outputPer1M": "1000000"},
        },
    )
    sidecar = await sidecar_factory(policy(providers=[provider_for(llm)], pricingFile=str(path)))
    house, prompt, _ = await cost_of(sidecar, "house-model")
    assert house == prompt  # $1 per input token, from the file
    gpt, _, completion = await cost_of(sidecar, "gpt-4o")
    assert gpt == completion  # the file overrides the bundled price
    _, report = await sidecar.admin("GET", "/admin/usage")
    assert report["prices"] == {
        "bundledAsOf": PRICES_AS_OF,
        "file": str(path.resolve()),
        "fileAsOf": "2026-12-01",
        "fileModels": 2,
        "policyModels": 0,
    }


async def test_policy_pricing_wins_over_the_price_file(
    llm: SimulatedLLM, sidecar_factory, tmp_path: Path
) -> None:
    path = price_file(tmp_path, **{"house-model": {"inputPer1M": "1000000", "outputPer1M": "0"}})
    sidecar = await sidecar_factory(
        policy(
            providers=[provider_for(llm)],
            pricingFile=str(path),
            pricing={"house-model": {"inputPer1M": "0", "outputPer1M": "0"}},
        )
    )
    cost, _, _ = await cost_of(sidecar, "house-model")
    assert cost == 0


async def test_an_updated_price_file_applies_with_the_next_configuration(
    llm: SimulatedLLM, sidecar_factory, tmp_path: Path
) -> None:
    path = price_file(tmp_path, **{"house-model": {"inputPer1M": "0", "outputPer1M": "0"}})
    sidecar = await sidecar_factory(policy(providers=[provider_for(llm)], pricingFile=str(path)))
    price_file(
        tmp_path, "2026-12-02", **{"house-model": {"inputPer1M": "1000000", "outputPer1M": 0}}
    )
    _, current = await sidecar.admin("GET", "/admin/config")
    document = current["config"]
    document["defaults"]["timeoutSeconds"] = 59  # any change: a new configuration
    status, _ = await sidecar.admin("PUT", "/admin/config", json=document)
    assert status == 200
    cost, prompt, _ = await cost_of(sidecar, "house-model")
    assert cost == prompt
    _, report = await sidecar.admin("GET", "/admin/usage")
    assert report["prices"]["fileAsOf"] == "2026-12-02"


async def test_a_changed_price_file_is_re_read_without_a_new_configuration(
    llm: SimulatedLLM, sidecar_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    monkeypatch.setattr(pricing, "FILE_CHECK_S", 0)  # check at every look-up
    path = price_file(tmp_path, **{"house-model": {"inputPer1M": "0", "outputPer1M": "0"}})
    sidecar = await sidecar_factory(policy(providers=[provider_for(llm)], pricingFile=str(path)))
    assert (await cost_of(sidecar, "house-model"))[0] == 0
    replaced = tmp_path / "next.yaml"  # swapped in by rename, as the kubelet does
    replaced.write_text(
        json.dumps(
            {"asOf": "2026-12-03", "models": {"house-model": {"inputPer1M": 1e6, "outputPer1M": 0}}}
        )
    )
    replaced.replace(path)
    cost, prompt = await cost_of_another(sidecar, "house-model")
    assert cost == prompt
    path.write_text("models: [broken")  # a bad edit: logged, the last prices stay
    _, report = await sidecar.admin("GET", "/admin/usage")
    assert report["prices"]["fileAsOf"] == "2026-12-03"
    await cost_of_another(sidecar, "house-model")
    assert "price file changed but did not load" in caplog.text
    _, report = await sidecar.admin("GET", "/admin/usage")
    assert report["prices"]["fileAsOf"] == "2026-12-03"


async def cost_of_another(sidecar: SidecarHandle, model: str) -> tuple[Decimal, int]:
    """One more call for ``model``: its own cost and prompt tokens."""
    _, before = await sidecar.admin("GET", "/admin/usage")
    start = next(Decimal(r["costUSD"]) for r in before["series"] if r["model"] == model)
    total, prompt, _ = await cost_of(sidecar, model)
    return total - start, prompt


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read pricingFile"),
        ("asOf: 2026-12-01\nmodels: {m: {inputPer1M: -1, outputPer1M: 1}}", "models.m.inputPer1M"),
        ("models: {}", "asOf"),
        ("[: not yaml", "is not YAML or JSON"),
        ("x" * (1024 * 1024 + 1), "larger than"),
        ("fifo", "is not a regular file"),
    ],
)
async def test_a_bad_price_file_refuses_the_configuration_and_keeps_the_running_one(
    sidecar: SidecarHandle, tmp_path: Path, content: str | None, problem: str
) -> None:
    path = tmp_path / "prices.yaml"
    if content == "fifo":
        os.mkfifo(path)
    elif content is not None:
        path.write_text(content)
    _, current = await sidecar.admin("GET", "/admin/config")
    document = current["config"]
    document["pricingFile"] = str(path)
    status, body = await sidecar.admin("PUT", "/admin/config", json=document)
    assert status == 400 and problem in body["problems"][0]
    _, after = await sidecar.admin("GET", "/admin/config")
    assert after["version"] == current["version"]
