"""Vendor names: OpenRouter's vendor/model spelling added and taken away."""

from __future__ import annotations

from sluice_sidecar.economics.vendors import vendor_of, with_vendor, without_vendor


def test_bare_names_get_their_vendor_and_unknown_ones_stay() -> None:
    assert with_vendor("gpt-4o-mini") == "openai/gpt-4o-mini"
    assert with_vendor("claude-3-5-haiku") == "anthropic/claude-3-5-haiku"
    assert with_vendor("gemini-2.5-flash") == "google/gemini-2.5-flash"
    assert with_vendor("mistralai/mixtral-8x7b") == "mistralai/mixtral-8x7b"
    assert with_vendor("house-model") == "house-model"
    assert vendor_of("x-ai/grok-4") == "x-ai" and vendor_of("house-model") is None


def test_vendor_names_lose_their_vendor_and_dotted_versions() -> None:
    assert without_vendor("gpt-4o") == []
    assert without_vendor("openai/gpt-4.1") == ["gpt-4.1", "gpt-4-1"]
    assert without_vendor("anthropic/claude-3.5-sonnet") == [
        "claude-3.5-sonnet",
        "claude-3-5-sonnet",
    ]
