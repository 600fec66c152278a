"""Read LlmPolicy documents from YAML text or from a directory of YAML files.

Standalone mode uses this on a folder (``*.yaml``, ``*.yml``, multi-document files allowed);
documents of other kinds (for example LlmBudget, Deployments in the same file) are skipped.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from sluice_sidecar.config.model import LlmPolicy, config_problems

POLICY_KIND = "LlmPolicy"


class PolicyLoadError(ValueError):
    """One or more documents are not valid; ``problems`` lists each with its file."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def load_policy_documents(text: str, *, origin: str = "<text>") -> list[LlmPolicy]:
    problems: list[str] = []
    policies: list[LlmPolicy] = []
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as error:
        raise PolicyLoadError([f"{origin}: invalid YAML: {error}"]) from error
    for index, document in enumerate(documents):
        if not isinstance(document, dict) or document.get("kind") != POLICY_KIND:
            continue
        try:
            policies.append(LlmPolicy.model_validate(document))
        except ValidationError as error:
            name = (document.get("metadata") or {}).get("name", f"document {index}")
            problems.extend(f"{origin} ({name}): {p}" for p in config_problems(error))
    if problems:
        raise PolicyLoadError(problems)
    return policies


def read_policy_dir(directory: Path) -> list[LlmPolicy]:
    if not directory.is_dir():
        raise PolicyLoadError([f"{directory}: not a directory"])
    policies: list[LlmPolicy] = []
    problems: list[str] = []
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    for path in files:
        try:
            policies.extend(load_policy_documents(path.read_text(), origin=path.name))
        except PolicyLoadError as error:
            problems.extend(error.problems)
        except OSError as error:
            problems.append(f"{path.name}: {error}")
    if problems:
        raise PolicyLoadError(problems)
    return policies
