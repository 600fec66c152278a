"""Configuration: the LlmPolicy resource model, the compiled SidecarConfig, the compiler.

This package is the contract between the control plane and the data plane. The operator imports
it to validate and compile resources; the sidecar imports it to load what it is given. Nothing in
here imports the rest of the sidecar.
"""

from sluice_sidecar.config.compiler import compile_policies
from sluice_sidecar.config.loader import PolicyLoadError, load_policy_documents, read_policy_dir
from sluice_sidecar.config.model import (
    CircuitBreakerSpec,
    DefaultsSpec,
    LlmPolicy,
    LlmPolicySpec,
    OperationSpec,
    PresetSpec,
    ProviderSpec,
    RetrySpec,
    SidecarConfig,
    config_problems,
)

__all__ = [
    "CircuitBreakerSpec",
    "DefaultsSpec",
    "LlmPolicy",
    "LlmPolicySpec",
    "OperationSpec",
    "PolicyLoadError",
    "PresetSpec",
    "ProviderSpec",
    "RetrySpec",
    "SidecarConfig",
    "compile_policies",
    "config_problems",
    "load_policy_documents",
    "read_policy_dir",
]
