"""The price table: bundled prices, suffix and glob matching, policy overrides, unpriced models."""

from __future__ import annotations

import random
from decimal import Decimal

from sluice_sidecar.economics.pricing import BUNDLED, PRICES_AS_OF, Price, PriceTable


def test_bundled_table_is_dated_and_covers_the_main_vendors() -> None:
    assert PRICES_AS_OF
    for model in ("gpt-4o", "claude-haiku-4-5", "gemini-2.5-pro", "mistral-large", "deepseek-chat"):
        assert model in BUNDLED


def test_exact_and_dated_names() -> None:
    table = PriceTable({})
    price = table.lookup(None, "gpt-4o")
    assert price is not None and price.input_per_1m == Decimal("2.50")
    dated = table.lookup("openai", "gpt-4o-mini-2024-07-18")
    assert dated is not None and dated.output_per_1m == Decimal("0.60")
    claude = table.lookup(None, "claude-3-5-haiku-20241022")
    assert claude is not None and claude.input_per_1m == Decimal("0.80")
    assert table.lookup(None, "claude-sonnet-4-6") is not None  # glob claude-sonnet-4*


def test_unknown_model_is_none_not_zero() -> None:
    assert PriceTable({}).lookup("openai", "my-finetune-v3") is None


def test_local_models_are_free() -> None:
    price = PriceTable({}).lookup("ollama", "llama3.1:8b")
    assert price is not None and price.cost(1000, 1000) == 0 and price.source == "local"


def test_policy_overrides_win_and_may_name_a_provider() -> None:
    d = Decimal
    table = PriceTable({"gpt-4o": (d(1), d(2), d(1)), "azure/gpt-4o": (d(3), d(4), d(3))})
    assert table.lookup("openai", "gpt-4o").input_per_1m == 1  # type: ignore[union-attr]
    assert table.lookup("azure", "gpt-4o").input_per_1m == 3  # type: ignore[union-attr]
    assert table.lookup(None, "gpt-4o").source == "policy"  # type: ignore[union-attr]


def test_cost_is_exact_decimal_with_cached_input() -> None:
    price = PriceTable({}).lookup(None, "gpt-4o")
    assert price is not None
    # 1000 input of which 400 cached, 100 output: 600*2.50 + 400*1.25 + 100*10 per 1M.
    assert price.cost(1000, 100, 400) == Decimal("0.003")
    assert isinstance(price.cost(1, 1), Decimal)


def test_vendor_prefixed_names_are_priced_as_the_vendor_model() -> None:
    table = PriceTable({})
    for model, bare in [
        ("openai/gpt-4o", "gpt-4o"),
        ("anthropic/claude-3.5-sonnet", "claude-3-5-sonnet"),
        ("anthropic/claude-3-opus-20240229", "claude-3-opus"),
        ("google/gemini-pro-1.5", "gemini-1.5-pro"),
    ]:
        assert table.lookup("openrouter", model) == table.lookup(None, bare), model
    assert table.lookup("openrouter", "meta-llama/llama-3.1-8b-instruct") is None  # hosted


def test_ollama_names_without_a_tag_are_local() -> None:
    for model in ("llama3.1", "mistral", "qwen2.5", "nomic-embed-text"):
        price = PriceTable({}).lookup("ollama", model)
        assert price is not None and price.source == "local", model
    assert PriceTable({}).lookup(None, "mistral-large").input_per_1m > 0  # type: ignore[union-attr]


def test_the_worst_cost_is_the_dearer_of_the_input_read_fresh_or_cached() -> None:
    chooser = random.Random(13)
    for _ in range(2000):
        rates = [
            Decimal(chooser.randint(0, 3000)) / chooser.choice((1, 10, 100, 1000)) for _ in "ioc"
        ]
        price = Price(rates[0], rates[1], rates[2], "policy")
        prompt, output = chooser.randint(0, 200_000), chooser.randint(0, 50_000)
        both = max(price.cost(prompt, output), price.cost(prompt, output, prompt))
        worst = price.worst_cost(prompt, output)
        assert worst == both and str(worst) == str(both)  # the same figure, written the same
