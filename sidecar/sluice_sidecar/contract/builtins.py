"""Built-in operation types: the presets and timeouts a policy starts from.

Two tables from the reference design. Presets name content-generation steps; timeouts name the
long-running analysis steps. An operation may appear in either or both; any other operation a
policy does not define gets ``DefaultsSpec.timeout_seconds`` (60 s).
"""

from __future__ import annotations

from sluice_sidecar.contract.model import OperationSpec, PresetSpec

DEFAULT_OPERATION = "Completion"

BUILTIN_PRESETS: dict[str, tuple[float, int]] = {
    # operation: (temperature, max tokens)
    "Planning": (0.7, 2000),
    "Scripting": (0.8, 4000),
    "SsmlPlanning": (0.3, 3000),
    "VisualPrompts": (0.9, 1500),
    "RagRetrieval": (0.2, 2000),
    "SceneAnalysis": (0.3, 800),
    "ComplexityAnalysis": (0.2, 1000),
    "CoherenceValidation": (0.2, 800),
    "NarrativeValidation": (0.3, 1500),
    "TransitionGeneration": (0.7, 500),
    "ScriptRefinement": (0.6, 3000),
    "Creative": (0.9, 3000),
    "Completion": (0.7, 2000),
}

BUILTIN_TIMEOUTS: dict[str, float] = {
    "ScriptGeneration": 120,
    "ScriptRefinement": 180,
    "VisualPrompt": 45,
    "NarrationOptimization": 30,
    "PacingAnalysis": 60,
    "SceneImportance": 45,
    "ContentComplexity": 45,
    "NarrativeArc": 60,
}


def builtin_operations() -> dict[str, OperationSpec]:
    operations: dict[str, OperationSpec] = {}
    for name in sorted(BUILTIN_PRESETS.keys() | BUILTIN_TIMEOUTS.keys()):
        preset = None
        if name in BUILTIN_PRESETS:
            temperature, max_tokens = BUILTIN_PRESETS[name]
            preset = PresetSpec(temperature=temperature, max_tokens=max_tokens)
        operations[name] = OperationSpec(timeout_seconds=BUILTIN_TIMEOUTS.get(name), preset=preset)
    return operations
