"""Model prices: a bundled, dated table, under a price table file and the policy's ``pricing``.

``PriceTable`` is built once per configuration (``runtime.build_runtime``) and answers
``lookup(provider, model)`` from a bounded memo. Look-up order: the policy's overrides, then
the price table file the configuration names (``price_file``; re-read when it changes, checked
at most every ``FILE_CHECK_S``), then the bundled table. In each, ``provider/model`` then
``model``; first exactly, then with a date or ``-latest`` suffix removed (``gpt-4o-2024-08-06``
-> ``gpt-4o``), then a vendor-prefixed name without its vendor (``openai/gpt-4o`` -> ``gpt-4o``,
``anthropic/claude-3.5-sonnet`` -> ``claude-3-5-sonnet``: OpenRouter's spelling), then by glob.
Local models are free: Ollama models with a tag (``llama3.1:8b``) or without one
(``llama3.1``; the library's bare names are listed), and whatever a policy prices at zero.
A model found nowhere is ``None``: callers report it as unpriced, never as zero.

Prices are USD per one million tokens, as ``Decimal``.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sluice_sidecar.economics.price_file import PriceFileWatch
from sluice_sidecar.economics.vendors import without_vendor

PRICES_AS_OF = "2025-11-01"
MILLION = Decimal(1_000_000)
MAX_MEMO = 4096
FILE_CHECK_S = 10.0  # how often a price table file is checked for a change
_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest|@\d{8}|-preview(-\d{2}-\d{2})?)$")


@dataclass(frozen=True, slots=True)
class Price:
    input_per_1m: Decimal
    output_per_1m: Decimal
    cached_input_per_1m: Decimal
    source: str  # "bundled", "file", "policy" or "local"

    def cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> Decimal:
        """Cost of a call; ``input_tokens`` includes the cached ones."""
        fresh = max(input_tokens - cached_input_tokens, 0)
        total = (
            fresh * self.input_per_1m
            + cached_input_tokens * self.cached_input_per_1m
            + output_tokens * self.output_per_1m
        )
        return total / MILLION

    def worst_cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        """The most a call can cost before anyone knows whether the provider reads its input
        from its cache: ``max`` of ``cost`` both ways, worked out once (the dearer way is
        known from the two input prices)."""
        if input_tokens <= 0 or self.cached_input_per_1m <= self.input_per_1m:
            return self.cost(input_tokens, output_tokens)
        return self.cost(input_tokens, output_tokens, input_tokens)


def _price(values: tuple[Decimal, Decimal, Decimal], source: str) -> Price:
    zero = not any(values)
    return Price(*values, "local" if zero and source == "bundled" else source)


def _p(inp: str, out: str, cached: str | None = None) -> tuple[Decimal, Decimal, Decimal]:
    return Decimal(inp), Decimal(out), Decimal(cached if cached is not None else inp)


# Ollama library models an app names without a tag; hosted APIs spell theirs otherwise
# (meta-llama/llama-3.1-8b-instruct, open-mistral-nemo), so these names mean a local model.
OLLAMA_LIBRARY = (
    "llama2",
    "llama3",
    "llama3.1",
    "llama3.2",
    "llama3.3",
    "mistral",
    "mixtral",
    "gemma",
    "gemma2",
    "gemma3",
    "phi3",
    "phi4",
    "qwen2",
    "qwen2.5",
    "qwen3",
    "codellama",
    "deepseek-r1",
    "llava",
    "nomic-embed-text",
    "mxbai-embed-large",
)

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
    "claude-3-opus": _p("15.00", "75.00", "1.50"),
    "claude-3-sonnet": _p("3.00", "15.00", "0.30"),
    "claude-3-haiku": _p("0.25", "1.25", "0.03"),
    # Google
    "gemini-2.5-pro": _p("1.25", "10.00", "0.31"),
    "gemini-2.5-flash": _p("0.30", "2.50", "0.075"),
    "gemini-2.5-flash-lite": _p("0.10", "0.40", "0.025"),
    "gemini-2.0-flash": _p("0.10", "0.40", "0.025"),
    "gemini-1.5-pro": _p("1.25", "5.00"),
    "gemini-1.5-flash": _p("0.075", "0.30"),
    "gemini-1.5-flash-8b": _p("0.0375", "0.15"),
    "gemini-1.0-pro": _p("0.50", "1.50"),
    "gemini-pro": _p("0.50", "1.50"),  # the 1.0 model's first name
    # OpenRouter's older spelling of the 1.5 models (google/gemini-pro-1.5)
    "gemini-pro-1.5": _p("1.25", "5.00"),
    "gemini-flash-1.5": _p("0.075", "0.30"),
    "gemini-flash-1.5-8b": _p("0.0375", "0.15"),
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
    # Local: Ollama names with a tag (llama3.1:8b, qwen2.5:7b-instruct; also OpenRouter's
    # ":free" variants), and the Ollama library's bare names, which default to ":latest".
    "*:*": _p("0", "0"),
    **{name: _p("0", "0") for name in OLLAMA_LIBRARY},
}


class PriceTable:
    """Prices of one configuration: ``overrides`` (policy) over a file over the bundled table."""

    def __init__(
        self,
        overrides: Mapping[str, tuple[Decimal, Decimal, Decimal]],
        file: PriceFileWatch | None = None,
    ) -> None:
        self._overrides = dict(overrides)
        self._file = file
        self._next_check = time.monotonic() + FILE_CHECK_S
        self._memo: dict[tuple[str | None, str], Price | None] = {}
        self._generation = 0

    def lookup(self, provider: str | None, model: str) -> Price | None:
        self._check_file()
        key = (provider, model)
        if key in self._memo:
            return self._memo[key]
        found = self._resolve(provider, model)
        if len(self._memo) < MAX_MEMO:
            self._memo[key] = found
        return found

    def generation(self) -> int:
        """+1 whenever the file's prices replaced the ones looked up before (the file checked
        as for a look-up): whoever keeps what it worked out from them starts again."""
        self._check_file()
        return self._generation

    def _check_file(self) -> None:
        if self._file is not None and time.monotonic() >= self._next_check:
            self._next_check = time.monotonic() + FILE_CHECK_S
            if self._file.refresh():
                self._memo.clear()
                self._generation += 1

    def describe(self) -> dict[str, Any]:
        """Where prices come from, for ``GET /admin/usage``."""
        loaded = self._file.current if self._file is not None else None
        return {
            "bundledAsOf": PRICES_AS_OF,
            "file": loaded.path if loaded else None,
            "fileAsOf": loaded.as_of if loaded else None,
            "fileModels": len(loaded.prices) if loaded else 0,
            "policyModels": len(self._overrides),
        }

    def _tables(self) -> list[tuple[Mapping[str, tuple[Decimal, Decimal, Decimal]], str]]:
        tables: list[tuple[Mapping[str, tuple[Decimal, Decimal, Decimal]], str]] = [
            (self._overrides, "policy")
        ]
        if self._file is not None:
            tables.append((self._file.current.prices, "file"))
        tables.append((BUNDLED, "bundled"))
        return tables

    def _resolve(self, provider: str | None, model: str) -> Price | None:
        bare = _SUFFIX.sub("", model)
        names = [model, bare]
        if provider is not None:
            names = [f"{provider}/{model}", f"{provider}/{bare}", *names]
        names += [n for name in without_vendor(bare) for n in (name, _SUFFIX.sub("", name))]
        for table, source in self._tables():
            for name in names:
                if name in table:
                    return _price(table[name], source)
            for pattern, values in table.items():
                if any(c in pattern for c in "*?[") and any(
                    fnmatch.fnmatchcase(n, pattern) for n in names
                ):
                    return _price(values, source)
        return None
