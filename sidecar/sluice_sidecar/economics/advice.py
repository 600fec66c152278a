"""Optimisation suggestions for a session report, each with an estimated saving in USD.

* caching: requests repeated within the session that were not answered from the cache;
  the saving is what the repeats cost.
* cheaper model: a model with a cheaper sibling of the same vendor (``CHEAPER``); the saving is
  the same tokens at the sibling's bundled price.
* shorter prompts: per operation, input tokens dominate (over 4 per output token, over 1000 per
  call) and most of the cost; the saving is a quarter of the input cost.
* batching: many small embeddings calls; the saving is requests, not dollars (per-token prices).

Suggestions are sorted by saving and only made when the saving is worth mentioning.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sluice_sidecar.economics.pricing import PriceTable

if TYPE_CHECKING:
    from sluice_sidecar.economics.sessions import Session

CHEAPER = {
    "gpt-5": "gpt-5-mini",
    "gpt-4.1": "gpt-4.1-mini",
    "gpt-4o": "gpt-4o-mini",
    "gpt-4-turbo": "gpt-4o-mini",
    "gpt-4": "gpt-4o-mini",
    "o1": "o3-mini",
    "o3": "o4-mini",
    "claude-opus-4-1": "claude-sonnet-4-5",
    "claude-opus-4": "claude-sonnet-4-5",
    "claude-sonnet-4-5": "claude-haiku-4-5",
    "claude-sonnet-4": "claude-haiku-4-5",
    "claude-3-7-sonnet": "claude-haiku-4-5",
    "claude-3-5-sonnet": "claude-3-5-haiku",
    "gemini-2.5-pro": "gemini-2.5-flash",
    "gemini-1.5-pro": "gemini-1.5-flash",
    "mistral-large": "mistral-small",
    "text-embedding-3-large": "text-embedding-3-small",
}
MIN_SAVING = Decimal("0.000001")
MIN_EMBEDDING_CALLS = 10
PROMPT_SHARE = Decimal("0.25")
_BUNDLED = PriceTable({})


def suggestions(session: Session) -> list[dict[str, Any]]:
    found = [*_caching(session), *_cheaper_models(session), *_prompts(session)]
    found += _batching(session)
    found.sort(key=lambda s: Decimal(s["estimatedSavingsUSD"]), reverse=True)
    return found


def _item(kind: str, message: str, saving: Decimal) -> dict[str, Any]:
    return {"kind": kind, "message": message, "estimatedSavingsUSD": str(saving)}


def _caching(session: Session) -> list[dict[str, Any]]:
    if session.repeats == 0:
        return []
    total = session.total
    rate = total.cache_hits / total.requests if total.requests else 0.0
    return [
        _item(
            "enable-caching",
            f"{session.repeats} of {total.requests} calls repeated an earlier identical request "
            f"(cache hit rate {rate:.0%}); enable the cache (spec.cache.enabled, or "
            "operations.<Name>.cache.enabled for non-deterministic operations)",
            session.repeat_cost,
        )
    ]


def _cheaper_models(session: Session) -> list[dict[str, Any]]:
    out = []
    for model, totals in session.by_model.items():
        current = _BUNDLED.lookup(None, model)
        bare = next((m for m in CHEAPER if model == m or model.startswith(m + "-2")), None)
        if current is None or bare is None or totals.cost <= 0:
            continue
        cheaper = _BUNDLED.lookup(None, CHEAPER[bare])
        if cheaper is None:
            continue
        alternative = cheaper.cost(
            totals.input_tokens, totals.output_tokens, totals.cached_input_tokens
        )
        saving = totals.cost - alternative
        if saving > MIN_SAVING:
            out.append(
                _item(
                    "cheaper-model",
                    f"{model} cost {totals.cost} USD for {totals.requests} calls; the same tokens "
                    f"on {CHEAPER[bare]} would cost {alternative.quantize(Decimal('1e-9'))} USD "
                    "(check its quality on these operations first)",
                    saving,
                )
            )
    return out


def _prompts(session: Session) -> list[dict[str, Any]]:
    """Per operation, over the listed calls (each priced at its own model's input price)."""
    groups: dict[str, list[Any]] = {}  # operation -> [calls, input, output, input cost, cost]
    for record in session.calls:
        price = _BUNDLED.lookup(None, record.model)
        if record.usage is None or record.cost is None or record.cache == "hit" or price is None:
            continue
        row = groups.setdefault(record.operation, [0, 0, 0, Decimal(0), Decimal(0)])
        row[0] += 1
        row[1] += record.usage.input_tokens
        row[2] += record.usage.output_tokens
        row[3] += record.usage.input_tokens * price.input_per_1m / 1_000_000
        row[4] += record.cost
    out = []
    for operation, (calls, inputs, outputs, input_cost, cost) in sorted(groups.items()):
        per_call = inputs / calls
        if per_call > 1000 and inputs > 4 * max(outputs, 1) and input_cost * 2 > cost:
            out.append(
                _item(
                    "shorter-prompts",
                    f"{operation} sends {per_call:.0f} input tokens per call on average for "
                    f"{outputs / calls:.0f} output; trimming prompts by a quarter (shorter "
                    "context, fewer examples, provider prompt caching) saves about this",
                    (input_cost * PROMPT_SHARE).quantize(Decimal("1e-9")),
                )
            )
    return out


def _batching(session: Session) -> list[dict[str, Any]]:
    calls = session.by_kind.get("embeddings", 0)
    if calls < MIN_EMBEDDING_CALLS:
        return []
    return [
        _item(
            "batching",
            f"{calls} embeddings calls: send several inputs per call, or enable "
            "batching.embeddings so the sidecar merges concurrent calls (fewer requests and "
            "rate-limit headroom; per-token prices are unchanged)",
            Decimal(0),
        )
    ]
