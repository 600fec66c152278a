"""Which vendor makes a model, by its name: OpenRouter's ``vendor/model`` spelling both ways.

Used by the runtime (an ``openrouter`` provider sends ``gpt-4o`` as ``openai/gpt-4o``), by the
price table (``openai/gpt-4o`` is priced as ``gpt-4o``) and by the suggestions (a cheaper
equivalent at another vendor). Names no rule knows stay as they are.
"""

from __future__ import annotations

import re

# Bare model name prefix -> the vendor prefix OpenRouter uses for it.
_VENDOR_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("text-embedding-", "openai"),
    ("claude-", "anthropic"),
    ("gemini-", "google"),
    ("gemma", "google"),
    ("mistral-", "mistralai"),
    ("mixtral-", "mistralai"),
    ("codestral", "mistralai"),
    ("open-mistral-", "mistralai"),
    ("deepseek-", "deepseek"),
    ("grok-", "x-ai"),
    ("command-", "cohere"),
    ("llama-", "meta-llama"),
)
_DOTTED_VERSION = re.compile(r"(?<=\d)\.(?=\d)")


def vendor_of(model: str) -> str | None:
    """The vendor of ``model`` (``openai/gpt-4o`` or ``gpt-4o`` -> ``openai``); None: unknown."""
    if "/" in model:
        return model.split("/", 1)[0] or None
    for prefix, vendor in _VENDOR_PREFIXES:
        if model.startswith(prefix):
            return vendor
    return None


def with_vendor(model: str) -> str:
    """OpenRouter's name of ``model``: a bare name gets its vendor prefix when one is known."""
    if "/" in model:
        return model
    vendor = vendor_of(model)
    return f"{vendor}/{model}" if vendor else model


def without_vendor(model: str) -> list[str]:
    """Names a vendor-prefixed model may be priced under, best first: the part after the vendor,
    then with dotted versions dashed (OpenRouter's ``claude-3.5-sonnet`` is ``claude-3-5-sonnet``).
    Empty for a bare name."""
    if "/" not in model:
        return []
    bare = model.rsplit("/", 1)[1]
    dashed = _DOTTED_VERSION.sub("-", bare)
    return [bare] if dashed == bare else [bare, dashed]
