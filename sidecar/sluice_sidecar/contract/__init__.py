"""Configuration: the LlmPolicy resource model, the compiled SidecarConfig, the compiler.

This package is the contract between the control plane and the data plane. The operator imports
it to validate and compile resources; the sidecar imports it to load what it is given. Nothing in
here imports the rest of the sidecar.
"""

from sluice_sidecar.contract.compiler import compile_policies
from sluice_sidecar.contract.economics import (
    BatchingSpec,
    BudgetLimits,
    BudgetScope,
    BudgetThresholds,
    CacheSpec,
    CompiledBudget,
    EmbeddingsBatchSpec,
    LatencySpec,
    LlmBudgetSpec,
    ModelPriceSpec,
    OperationCacheSpec,
    QueueSpec,
    WorkloadRef,
)
from sluice_sidecar.contract.loader import (
    PolicyLoadError,
    load_documents,
    load_policy_documents,
    read_policy_dir,
    read_resource_dir,
)
from sluice_sidecar.contract.model import (
    CircuitBreakerSpec,
    DefaultsSpec,
    LlmBudget,
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
    "BatchingSpec",
    "BudgetLimits",
    "BudgetScope",
    "BudgetThresholds",
    "CacheSpec",
    "CircuitBreakerSpec",
    "CompiledBudget",
    "DefaultsSpec",
    "EmbeddingsBatchSpec",
    "LatencySpec",
    "LlmBudget",
    "LlmBudgetSpec",
    "LlmPolicy",
    "LlmPolicySpec",
    "ModelPriceSpec",
    "OperationCacheSpec",
    "OperationSpec",
    "PolicyLoadError",
    "PresetSpec",
    "ProviderSpec",
    "QueueSpec",
    "RetrySpec",
    "SidecarConfig",
    "WorkloadRef",
    "compile_policies",
    "config_problems",
    "load_documents",
    "load_policy_documents",
    "read_policy_dir",
    "read_resource_dir",
]
