"""The configuration a workload gets when no valid LlmPolicy selects it."""

from __future__ import annotations

from sluice_sidecar.contract import LlmPolicy

DEFAULT_POLICY = LlmPolicy.model_validate(
    {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "LlmPolicy",
        "metadata": {"name": "built-in-defaults", "namespace": "sluice-system"},
        "spec": {
            "providers": [
                {"name": "openai", "type": "openai"},
                {"name": "anthropic", "type": "anthropic"},
            ]
        },
    }
)
