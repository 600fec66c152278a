"""Model prices: a bundled, dated table, overridden by the policy's ``pricing``.

``PriceTable`` is built once per configuration (``runtime.build_runtime``) and answers
``lookup(provider, model)`` from a bounded memo. Look-up order: ``provider/model`` then
``model`` in the policy's overrides, then the bundled table; each first exactly, then with a
date or ``-latest`` suffix removed (``gpt-4o-2024-08-06`` -> ``gpt-4o``), then by glob.
Local models are free: Ollama-style ``name:tag`` models (``llama3.1:8b``) and the providers
listed in ``local_providers`` (a policy marks a self-hosted model with a zero ``pricing``
entry). A model found nowhere is ``None``: callers report it as unpriced, never as zero.

Prices are USD per one million tokens, as ``Decimal``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

PRICES_AS_OF = "2025-11-01"
MILLION = Decimal(1_000_000)
MAX_MEMO = 4096
_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest|@\d{8}|-preview(-\d{2}-\d{2})?)$")


@dataclass(frozen=True, slots=True)
class Price:
    input_per_1m: Decimal
    output_per_1m: Decimal
    cached_input_per_1m: Decimal
    source: str  # "bundled", "policy" or "local"

    def cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> Decimal:
        """Cost of a call; ``input_tokens`` includes the cached ones."""
        fresh = max(input_tokens - cached_input_tokens, 0)
        total = (
            fresh * self.input_per_1m
            + cached_input_tokens * self.cached_input_per_1m
            + output_tokens * self.output_per_1m
        )
        return total / MILLION


def _price(values: tuple[Decimal, Decimal, Decimal], source: str) -> Price:
    zero = not any(values)
    return Price(*values, "local" if zero and source == "bundled" else source)


def _p(inp: str, out: str, cached: str | None = None) -> tuple[Decimal, Decimal, Decimal]:
    return Decimal(inp), Decimal(out), Decimal(cached if cached is not None else inp)


# USD per 1M tokens: input, output, cached input. Public list prices as of PRICES_AS_OF.
BUNDLED: dict[str, tuple[Decimal, Decimal, Decimal]] = {
    # OpenAI
    "gpt-5": _p("1.25", "10.00", "0.125"),
    "gpt-5-mini": _p("0.25", "2.00", "0.025"),
    "gpt-5-nano": _p("0.05", "0.40", "0.005"),
    "gpt-4.1": _p("2.00", "8.00", "0.50"),
    "gpt-4.1-mini": _p("0.40", "1.60", "0.10"),
    "gpt-4.1-nano": _p("0.10", "0.40", "0.025"),
    "gpt-4o": _p("2.50", "10.00", "1.25"),
    "gpt-4o-mini": _p("0.15", "0.60", "0.075"),
    "gpt-4-turbo": _p("10.00", "30.00"),
    "gpt-4": _p("30.00", "60.00"),
    "gpt-3.5-turbo": _p("0.50", "1.50"),
    "gpt-3.5-turbo-instruct": _p("1.50", "2.00"),
    "o1": _p("15.00", "60.00", "7.50"),
    "o1-mini": _p("1.10", "4.40", "0.55"),
    "o3": _p("2.00", "8.00", "0.50"),
    "o3-mini": _p("1.10", "4.40", "0.55"),
    "o4-mini": _p("1.10", "4.40", "0.275"),
    "text-embedding-3-small": _p("0.02", "0"),
    "text-embedding-3-large": _p("0.13", "0"),
    "text-embedding-ada-002": _p("0.10", "0"),
    # Anthropic (cached input: cache reads)
    "claude-opus-4-5": _p("5.00", "25.00", "0.50"),
    "claude-opus-4-1": _p("15.00", "75.00", "1.50"),
    "claude-opus-4": _p("15.00", "75.00", "1.50"),
    "claude-sonnet-4*": _p("3.00", "15.00", "0.30"),
    "claude-3-7-sonnet": _p("3.00", "15.00", "0.30"),
    "claude-3-5-sonnet": _p("3.00", "15.00", "0.30"),
    "claude-haiku-4-5": _p("1.00", "5.00", "0.10"),
    "claude-3-5-haiku": _p("0.80", "4.00", "0.08"),
    "claude-3-haiku": _p("0.25", "1.25", "0.03"),
    # Google
    "gemini-2.5-pro": _p("1.25", "10.00", "0.31"),
    "gemini-2.5-flash": _p("0.30", "2.50", "0.075"),
    "gemini-2.5-flash-lite": _p("0.10", "0.40", "0.025"),
    "gemini-2.0-flash": _p("0.10", "0.40", "0.025"),
    "gemini-1.5-pro": _p("1.25", "5.00"),
    "gemini-1.5-flash": _p("0.075", "0.30"),
    # Mistral
    "mistral-large": _p("2.00", "6.00"),
    "mistral-medium": _p("0.40", "2.00"),
    "mistral-small": _p("0.10", "0.30"),
    "codestral": _p("0.30", "0.90"),
    "open-mistral-nemo": _p("0.15", "0.15"),
    "mistral-embed": _p("0.10", "0"),
    # Others
    "deepseek-chat": _p("0.27", "1.10", "0.07"),
    "deepseek-reasoner": _p("0.55", "2.19", "0.14"),
    "grok-4": _p("3.00", "15.00", "0.75"),
    "grok-3-mini": _p("0.30", "0.50", "0.075"),
    "command-r-plus": _p("2.50", "10.00"),
    "command-r": _p("0.15", "0.60"),
    # Local (Ollama names carry a tag: llama3.1:8b, qwen2.5:7b-instruct)
    "*:*": _p("0", "0"),
}


class PriceTable:
    """Prices of one configuration: ``overrides`` (policy) over the bundled table."""

    def __init__(self, overrides: Mapping[str, tuple[Decimal, Decimal, Decimal]]) -> None:
        self._tables = (
            (dict(overrides), "policy"),
            (BUNDLED, "bundled"),
        )
        self._memo: dict[tuple[str | None, str], Price | None] = {}

    def lookup(self, provider: str | None, model: str) -> Price | None:
        key = (provider, model)
        if key in self._memo:
            return self._memo[key]
        found = self._resolve(provider, model)
        if len(self._memo) < MAX_MEMO:
            self._memo[key] = found
        return found

    def _resolve(self, provider: str | None, model: str) -> Price | None:
        bare = _SUFFIX.sub("", model)
        for table, source in self._tables:
            names = [model, bare]
            if provider is not None:
                names = [f"{provider}/{model}", f"{provider}/{bare}", *names]
            for name in names:
                if name in table:
                    return _price(table[name], source)
            for pattern, values in table.items():
                if any(c in pattern for c in "*?[") and any(
                    fnmatch.fnmatchcase(n, pattern) for n in names
                ):
                    return _price(values, source)
        return None
