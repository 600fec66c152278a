"""Read LlmPolicy and LlmBudget documents from YAML text or from a directory of YAML files.

Standalone mode uses this on a folder (``*.yaml``, ``*.yml``, multi-document files allowed);
documents of other kinds (for example Deployments in the same file) are skipped.
``read_policy_dir`` returns the policies only; ``read_resource_dir`` both kinds.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from sluice_sidecar.contract.model import LlmBudget, LlmPolicy, config_problems

POLICY_KIND = "LlmPolicy"
BUDGET_KIND = "LlmBudget"
Resource = LlmPolicy | LlmBudget
MODELS: dict[str, type[LlmPolicy] | type[LlmBudget]] = {
    POLICY_KIND: LlmPolicy,
    BUDGET_KIND: LlmBudget,
}


class PolicyLoadError(ValueError):
    """One or more documents are not valid; ``problems`` lists each with its file."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def load_policy_documents(text: str, *, origin: str = "<text>") -> list[LlmPolicy]:
    return [r for r in load_documents(text, origin=origin) if isinstance(r, LlmPolicy)]


def load_documents(text: str, *, origin: str = "<text>") -> list[Resource]:
    problems: list[str] = []
    policies: list[Resource] = []
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as error:
        raise PolicyLoadError([f"{origin}: invalid YAML: {error}"]) from error
    for index, document in enumerate(documents):
        kind = document.get("kind") if isinstance(document, dict) else None
        # kind is any YAML value: only a string names a model (a list is not even hashable).
        model = MODELS.get(kind) if isinstance(kind, str) else None
        if model is None:
            continue
        try:
            policies.append(model.model_validate(document))
        except ValidationError as error:
            metadata = document.get("metadata")
            name = metadata.get("name") if isinstance(metadata, dict) else None
            name = name if isinstance(name, str) else f"document {index}"
            problems.extend(f"{origin} ({name}): {p}" for p in config_problems(error))
    if problems:
        raise PolicyLoadError(problems)
    return policies


def read_policy_dir(directory: Path) -> list[LlmPolicy]:
    return [r for r in read_resource_dir(directory) if isinstance(r, LlmPolicy)]


def read_resource_dir(directory: Path) -> list[Resource]:
    if not directory.is_dir():
        raise PolicyLoadError([f"{directory}: not a directory"])
    policies: list[Resource] = []
    problems: list[str] = []
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    for path in files:
        try:
            documents = load_documents(path.read_text(), origin=path.name)
            policies.extend(_beside(directory, d) for d in documents)
        except PolicyLoadError as error:
            problems.extend(error.problems)
        except OSError as error:
            problems.append(f"{path.name}: {error}")
    if problems:
        raise PolicyLoadError(problems)
    return policies


def _beside(directory: Path, resource: Resource) -> Resource:
    """A policy's relative ``pricingFile`` names a file in its own folder."""
    if not isinstance(resource, LlmPolicy) or resource.spec.pricing_file is None:
        return resource
    path = Path(resource.spec.pricing_file)
    if path.is_absolute():
        return resource
    spec = resource.spec.model_copy(update={"pricing_file": str(directory / path)})
    return resource.model_copy(update={"spec": spec})
