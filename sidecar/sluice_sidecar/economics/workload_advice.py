"""Parameter suggestions for the whole workload, per operation (``GET /admin/suggestions``).

The orchestrator's rule-based optimiser, from the calls this process recorded (fed by the
metering stage like the usage ledger), each suggestion with its reasoning and estimated saving:

* ``max-tokens``: the output bound calls are sent with (or reserved at) is far above what they
  produce: suggest the observed 99th percentile plus a quarter, rounded up to 50. Per-token
  prices do not change, so the saving in USD is 0; budgets reserve that much less per call.
* ``temperature``: an analytic operation (its name says analysis, validation, retrieval,
  extraction or classification) runs above 0.3: suggest 0.2, which is steadier and makes its
  calls cacheable; no USD saving is claimed.
* ``cheaper-model``: a cheaper sibling of the same vendor (``advice.CHEAPER``); the saving is the
  operation's tokens on that model at the configuration's prices.
* ``switch-vendor``: a model of comparable class at another vendor (``EQUIVALENTS``) is cheaper
  in the price table; the cheapest one is suggested, with the same arithmetic.

Bounded: ``MAX_OPERATIONS`` operations (then ``other``), ``MAX_MODELS`` models each, the last
``WINDOW`` calls' output lengths, bounds and temperatures.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sluice_sidecar.economics.advice import CHEAPER
from sluice_sidecar.economics.ledger import CallRecord, Totals
from sluice_sidecar.economics.pricing import PriceTable
from sluice_sidecar.economics.vendors import vendor_of

MAX_OPERATIONS = 256
MAX_MODELS = 64
WINDOW = 1000
OTHER = "other"
MIN_CALLS = 20  # fewer calls say too little about an output distribution
MIN_SAVING = Decimal("0.000001")
ANALYTIC = re.compile(r"analy|valid|retriev|extract|classif|rag", re.IGNORECASE)
SUGGESTED_TEMPERATURE = 0.2
# Models of comparable class at other vendors (the price table says which is cheaper).
EQUIVALENTS: dict[str, tuple[str, ...]] = {
    "gpt-4o": ("claude-sonnet-4-5", "gemini-2.5-pro", "mistral-large"),
    "gpt-4.1": ("claude-sonnet-4-5", "gemini-2.5-pro", "mistral-large"),
    "gpt-4-turbo": ("claude-sonnet-4-5", "gemini-2.5-pro"),
    "gpt-4": ("claude-sonnet-4-5", "gemini-2.5-pro"),
    "gpt-4o-mini": ("claude-3-haiku", "gemini-2.0-flash", "mistral-small"),
    "gpt-4.1-mini": ("claude-3-5-haiku", "gemini-2.5-flash", "mistral-small"),
    "claude-3-opus": ("gpt-4.1", "gemini-2.5-pro"),
    "claude-opus-4-1": ("gpt-5", "gemini-2.5-pro"),
    "claude-sonnet-4-5": ("gpt-4.1", "gemini-2.5-pro"),
    "claude-3-5-sonnet": ("gpt-4.1", "gemini-2.5-pro"),
    "claude-3-7-sonnet": ("gpt-4.1", "gemini-2.5-pro"),
    "claude-3-5-haiku": ("gpt-4o-mini", "gemini-2.5-flash"),
    "claude-haiku-4-5": ("gpt-4.1-mini", "gemini-2.5-flash"),
    "gemini-2.5-pro": ("gpt-4.1", "claude-sonnet-4-5"),
    "gemini-1.5-pro": ("gpt-4.1", "claude-sonnet-4-5"),
    "mistral-large": ("gpt-4.1", "gemini-2.5-pro"),
}


@dataclass(slots=True)
class OperationUse:
    calls: int = 0
    outputs: deque[int] = field(default_factory=lambda: deque(maxlen=WINDOW))
    bounds: deque[int] = field(default_factory=lambda: deque(maxlen=WINDOW))
    temperatures: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    models: dict[str, Totals] = field(default_factory=dict)


class WorkloadAdvisor:
    def __init__(self) -> None:
        self._operations: dict[str, OperationUse] = {}

    def record(self, record: CallRecord) -> None:
        """A finished call (a metering recorder); answered, uncached calls only."""
        if not record.answered or record.cache == "hit" or record.usage is None:
            return
        name = record.operation
        if name not in self._operations and len(self._operations) >= MAX_OPERATIONS:
            name = OTHER
        use = self._operations.setdefault(name, OperationUse())
        use.calls += 1
        if record.estimated is None:  # a cut or cancelled call says nothing about its length
            use.outputs.append(record.usage.output_tokens)
        if record.output_bound is not None:
            use.bounds.append(record.output_bound)
        if record.temperature is not None:
            use.temperatures.append(record.temperature)
        model = record.model
        if model not in use.models and len(use.models) >= MAX_MODELS:
            model = OTHER
        use.models.setdefault(model, Totals()).add(record)

    def report(self, prices: PriceTable) -> dict[str, Any]:
        found = []
        for name, use in sorted(self._operations.items()):
            found += _max_tokens(name, use) + _temperature(name, use)
            for model, m in sorted(use.models.items()):
                found += _models(name, model, m, prices)
        found.sort(key=lambda s: Decimal(s["estimatedSavingsUSD"]), reverse=True)
        calls = sum(use.calls for use in self._operations.values())
        return {"calls": calls, "suggestions": found}


def _item(
    operation: str,
    kind: str,
    parameter: str,
    current: str | None,
    suggested: str,
    reasoning: str,
    saving: Decimal,
) -> dict[str, Any]:
    return {
        "operation": operation,
        "kind": kind,
        "parameter": parameter,
        "current": current,
        "suggested": suggested,
        "reasoning": reasoning,
        "estimatedSavingsUSD": str(saving),
    }


def _percentile(values: list[int], share: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def _max_tokens(operation: str, use: OperationUse) -> list[dict[str, Any]]:
    if len(use.outputs) < MIN_CALLS or not use.bounds:
        return []
    p99 = _percentile(list(use.outputs), 0.99)
    bound = _percentile(list(use.bounds), 0.5)
    suggested = max(50, math.ceil(p99 * 1.25 / 50) * 50)
    if suggested * 2 > bound:  # not far enough above what calls use to matter
        return []
    reasoning = (
        f"over the last {len(use.outputs)} calls the output was at most {max(use.outputs)} "
        f"tokens (99th percentile {p99}) while calls are bounded at {bound}; a bound of "
        f"{suggested} still leaves a quarter of headroom, and budgets reserve "
        f"{bound - suggested} tokens less per call (per-token prices are unchanged)"
    )
    return [
        _item(
            operation, "max-tokens", "maxTokens", str(bound), str(suggested), reasoning, Decimal(0)
        )
    ]


def _temperature(operation: str, use: OperationUse) -> list[dict[str, Any]]:
    if not use.temperatures or not ANALYTIC.search(operation):
        return []
    typical = sorted(use.temperatures)[len(use.temperatures) // 2]
    if typical <= 0.3:
        return []
    reasoning = (
        f"{operation} is an analytic task run at temperature {typical:g}; "
        f"{SUGGESTED_TEMPERATURE:g} gives steadier answers and makes its calls cacheable "
        "(the cache takes deterministic calls, temperature <= 0.3 by default)"
    )
    return [
        _item(
            operation,
            "temperature",
            "temperature",
            f"{typical:g}",
            f"{SUGGESTED_TEMPERATURE:g}",
            reasoning,
            Decimal(0),
        )
    ]


def _family(model: str) -> str | None:
    """The table key a model name belongs to (``gpt-4o-2024-08-06`` -> ``gpt-4o``)."""
    bare = model.rsplit("/", 1)[-1]
    keys = sorted({*CHEAPER, *EQUIVALENTS}, key=len, reverse=True)
    return next((k for k in keys if bare == k or bare.startswith(k + "-2")), None)


def _models(operation: str, model: str, m: Totals, prices: PriceTable) -> list[dict[str, Any]]:
    family = _family(model)
    if family is None or m.cost <= 0:
        return []

    def cost_on(other: str) -> Decimal | None:
        price = prices.lookup(None, other)
        if price is None:
            return None
        return price.cost(m.input_tokens, m.output_tokens, m.cached_input_tokens)

    out = []
    sibling = CHEAPER.get(family)
    if sibling is not None and (alternative := cost_on(sibling)) is not None:
        saving = m.cost - alternative
        if saving > MIN_SAVING:
            reasoning = (
                f"{m.requests} calls on {model} cost {m.cost} USD; the same tokens on {sibling}, "
                f"the same vendor's smaller model, would cost {_usd(alternative)} USD "
                "(check its quality on this operation first)"
            )
            out.append(
                _item(operation, "cheaper-model", "model", model, sibling, reasoning, saving)
            )
    vendor = vendor_of(family)
    options = [
        (cost, other)
        for other in EQUIVALENTS.get(family, ())
        if vendor_of(other) != vendor and (cost := cost_on(other)) is not None
    ]
    if options:
        alternative, other = min(options)
        saving = m.cost - alternative
        if saving > MIN_SAVING:
            reasoning = (
                f"{m.requests} calls on {model} ({vendor}) cost {m.cost} USD; {other} "
                f"({vendor_of(other)}), of comparable class, would cost {_usd(alternative)} USD "
                "for the same tokens at the price table's prices (add it as a provider, "
                "compare quality first)"
            )
            item = _item(operation, "switch-vendor", "model", model, other, reasoning, saving)
            out.append(item)
    return out


def _usd(amount: Decimal) -> str:
    return str(amount.quantize(Decimal("1e-9")))
