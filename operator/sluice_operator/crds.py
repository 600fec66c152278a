"""CustomResourceDefinitions generated from the pydantic models the sidecar validates with.

The models are the single source of truth: ``sluice_sidecar.contract`` for the specs,
``sluice_operator.status`` for the status the operator writes. This module turns their
JSON Schema into Kubernetes structural OpenAPI v3 (inlined ``$ref``, ``nullable`` instead of
``anyOf null``, boolean ``exclusiveMinimum``), adds what only the API server can enforce at
admission time (CEL ``x-kubernetes-validations`` for cross-field rules, list bounds that keep the
CEL cost estimate low) and the CRD trimmings (status subresource, printer columns, short names,
category ``sluice``). ``crds/`` holds the output; ``tests/operator/test_crds.py`` fails when it
and the models disagree. Regenerate with ``python -m sluice_operator.crds --write``.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from sluice_operator.status import BudgetStatus, PolicyStatus
from sluice_sidecar.contract.economics import LlmBudgetSpec
from sluice_sidecar.contract.model import LlmPolicySpec

GROUP = "sluice.dev"
VERSION = "v1alpha1"
CATEGORY = "sluice"
ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
CHART_CRD_DIR = ROOT / "helm" / "sluice" / "crds"  # the chart's copies, written alongside

Schema = dict[str, Any]

LABEL_SELECTOR: Schema = {
    "type": "object",
    "description": "Label selector of the workloads (pod template labels). Empty: every workload "
    "of the namespace.",
    "properties": {
        "matchLabels": {
            "type": "object",
            "additionalProperties": {"type": "string", "maxLength": 63},
        },
        "matchExpressions": {
            "type": "array",
            "maxItems": 32,
            "items": {
                "type": "object",
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string", "maxLength": 253},
                    "operator": {
                        "type": "string",
                        "enum": ["In", "NotIn", "Exists", "DoesNotExist"],
                    },
                    "values": {
                        "type": "array",
                        "maxItems": 64,
                        "items": {"type": "string", "maxLength": 63},
                    },
                },
            },
        },
    },
}

# Cross-field rules the API server enforces with CEL, keyed by schema path ("" is spec).
POLICY_RULES: dict[str, list[dict[str, str]]] = {
    "": [
        {
            "rule": "!has(self.operations) || self.operations.all(op, "
            "!has(self.operations[op].providers) || self.operations[op].providers.all(n, "
            "has(self.providers) && self.providers.exists(p, p.name == n)))",
            "message": "every provider named in operations[*].providers must exist in "
            "spec.providers",
        },
    ],
    "providers": [
        {
            "rule": "self.all(p, self.exists_one(q, q.name == p.name))",
            "message": "provider names must be unique",
        },
    ],
    "providers[]": [
        {
            "rule": "self.type != 'openai-compatible' || has(self.baseUrl)",
            "message": "baseUrl is required for providers of type openai-compatible",
        },
        {
            "rule": "(has(self.apiKeySecretRef) ? 1 : 0) + (has(self.apiKeyFile) ? 1 : 0)"
            " + (has(self.apiKeyEnv) ? 1 : 0) <= 1",
            "message": "set at most one of apiKeySecretRef, apiKeyFile, apiKeyEnv",
        },
    ],
    "retry": [
        {
            "rule": "self.maxDelayMs >= self.baseDelayMs",
            "message": "maxDelayMs must be >= baseDelayMs",
        }
    ],
    "circuitBreaker": [
        {
            "rule": "self.maxOpenSeconds >= self.openSeconds",
            "message": "maxOpenSeconds must be >= openSeconds",
        },
        {"rule": "self.successThreshold >= 1", "message": "successThreshold must be >= 1"},
    ],
}

# Bounds that keep CEL cost estimates within the API server's budget, keyed like POLICY_RULES.
POLICY_BOUNDS: dict[str, Schema] = {
    "providers": {"maxItems": 16},
    "providers[].name": {"maxLength": 63},
    "providers[].baseUrl": {"maxLength": 2048},
    "providers[].models": {"maxItems": 64},
    "providers[].models[]": {"maxLength": 253},
    "operations": {"maxProperties": 128},
    "operations{}.providers": {"maxItems": 16},
    "operations{}.providers[]": {"maxLength": 63},
}


def structural(schema: Schema, defs: dict[str, Schema]) -> Schema:
    """Convert one pydantic JSON Schema node into a Kubernetes structural schema node."""
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return structural(merged, defs)
    any_of = schema.get("anyOf")
    if any_of is not None:
        options = [o for o in any_of if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express anyOf {any_of} structurally")
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        nullable = structural({**options[0], **rest}, defs)
        nullable["nullable"] = True
        return nullable
    node: Schema = {}
    for key, value in schema.items():
        match key:
            case "title" | "$defs":
                continue
            case "default" if value is None:
                continue
            case "exclusiveMinimum" | "exclusiveMaximum":
                bound = "minimum" if key == "exclusiveMinimum" else "maximum"
                node[bound] = value
                node[key] = True
            case "properties":
                required = set(schema.get("required", ()))
                node["properties"] = {}
                for name, child_schema in value.items():
                    child = structural(child_schema, defs)
                    # A sub-object built by default_factory: spell its defaults out, so the
                    # API server fills them as pydantic does (and CEL sees the same values).
                    if (
                        child.get("type") == "object"
                        and "properties" in child
                        and not child.get("nullable")
                        and "default" not in child
                        and not child.get("required")
                        and name not in required
                    ):
                        child["default"] = {
                            k: v["default"]
                            for k, v in child["properties"].items()
                            if "default" in v
                        }
                    node["properties"][name] = child
            case "items":
                node["items"] = structural(value, defs)
            case "additionalProperties":
                if isinstance(value, dict):
                    node["additionalProperties"] = structural(value, defs)
                # ``false`` (extra="forbid"): the API server prunes and kubectl's strict field
                # validation reports unknown fields; structural schemas cannot say it.
            case "propertyNames":
                continue  # pattern on map keys: enforced by the operator's validation
            case "patternProperties":
                ((pattern, value_schema),) = value.items()
                node["additionalProperties"] = structural(value_schema, defs)
                node.setdefault("x-kubernetes-validations", []).append(
                    {
                        "rule": f"self.all(key, key.matches({pattern!r}))",
                        "message": f"keys must match {pattern}",
                    }
                )
            case _:
                node[key] = copy.deepcopy(value)
    if (
        node.get("type") == "object"
        and "properties" not in node
        and "additionalProperties" not in node
    ):
        node["x-kubernetes-preserve-unknown-fields"] = True
    return node


def _at(schema: Schema, path: str) -> Schema:
    node = schema
    for part in filter(None, path.replace("[]", ".[]").replace("{}", ".{}").split(".")):
        if part == "[]":
            node = node["items"]
        elif part == "{}":
            node = node["additionalProperties"]
        else:
            node = node["properties"][part]
    return node


def spec_schema(
    model: type[BaseModel], rules: dict[str, list[dict[str, str]]], bounds: dict[str, Schema]
) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema = structural(raw, raw.get("$defs", {}))
    if "selector" in schema.get("properties", {}):
        schema["properties"]["selector"] = copy.deepcopy(LABEL_SELECTOR)
    for path, extra in bounds.items():
        _at(schema, path).update(extra)
    for path, validations in rules.items():
        _at(schema, path).setdefault("x-kubernetes-validations", []).extend(validations)
    return schema


def status_schema(model: type[BaseModel]) -> Schema:
    """The status subresource's schema, from the model the operator writes it with."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural(raw, raw.get("$defs", {}))


def custom_resource_definition(
    *,
    kind: str,
    plural: str,
    short_names: list[str],
    spec: Schema,
    status: Schema,
    columns: list[dict[str, str]],
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "sluice"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


# `kubectl get -o wide` only (priority 1): why the resource is or is not Ready.
MESSAGE_COLUMN: dict[str, Any] = {
    "name": "Message",
    "type": "string",
    "priority": 1,
    "jsonPath": '.status.conditions[?(@.type=="Ready")].message',
}


def policy_crd() -> dict[str, Any]:
    return custom_resource_definition(
        kind="LlmPolicy",
        plural="llmpolicies",
        short_names=["llmpol", "llmp"],
        spec=spec_schema(LlmPolicySpec, POLICY_RULES, POLICY_BOUNDS),
        status=status_schema(PolicyStatus),
        columns=[
            {
                "name": "Ready",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
            },
            {"name": "Providers", "type": "integer", "jsonPath": ".status.providers"},
            {
                "name": "Sidecars",
                "type": "string",
                "jsonPath": ".status.sidecars.summary",
                "description": "sidecars synced / desired",
            },
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            MESSAGE_COLUMN,
        ],
    )


BUDGET_RULES: dict[str, list[dict[str, str]]] = {
    "thresholds": [
        {
            "rule": "self.warning < self.alert && self.alert <= 1.0",
            "message": "thresholds must satisfy warning < alert <= 1",
        }
    ],
}


def budget_crd() -> dict[str, Any]:
    return custom_resource_definition(
        kind="LlmBudget",
        plural="llmbudgets",
        short_names=["llmbud", "llmb"],
        spec=spec_schema(LlmBudgetSpec, BUDGET_RULES, {}),
        status=status_schema(BudgetStatus),
        columns=[
            {"name": "Period", "type": "string", "jsonPath": ".spec.period"},
            {"name": "Spent", "type": "string", "jsonPath": ".status.spentUSD"},
            {"name": "Limit", "type": "string", "jsonPath": ".status.limitUSD"},
            {"name": "Utilization", "type": "string", "jsonPath": ".status.utilization"},
            {"name": "State", "type": "string", "jsonPath": ".status.state"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            MESSAGE_COLUMN,
        ],
    )


def peering_crd() -> dict[str, Any]:
    """kopf's ClusterKopfPeering: the operator replicas' keep-alive records (priority, last
    seen, lifetime per replica in ``status``), from which the active one follows."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "clusterkopfpeerings.kopf.dev"},
        "spec": {
            "group": "kopf.dev",
            "scope": "Cluster",
            "names": {
                "kind": "ClusterKopfPeering",
                "plural": "clusterkopfpeerings",
                "singular": "clusterkopfpeering",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD document."""
    return {
        "llmpolicies.yaml": policy_crd(),
        "llmbudgets.yaml": budget_crd(),
        "clusterkopfpeerings.yaml": peering_crd(),
    }


def render(crd: dict[str, Any]) -> str:
    header = "# Generated by `python -m sluice_operator.crds --write` from the pydantic models.\n"
    header += (
        "# Do not edit: change sidecar/sluice_sidecar/contract/model.py or operator/.../crds.py.\n"
    )
    return header + yaml.safe_dump(crd, sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate or check crds/ and the chart's copy.")
    parser.add_argument("--write", action="store_true", help="write the *.yaml files")
    parser.add_argument(
        "--dir", type=Path, action="append", help=f"default: {CRD_DIR} and {CHART_CRD_DIR}"
    )
    args = parser.parse_args(argv)
    stale = []
    for directory in args.dir or [CRD_DIR, CHART_CRD_DIR]:
        for name, crd in all_crds().items():
            path = directory / name
            text = render(crd)
            if args.write:
                path.write_text(text)
                print(f"wrote {path}")
            elif not path.exists() or path.read_text() != text:
                stale.append(str(path))
    if stale:
        print(f"out of date: {', '.join(stale)}; run python -m sluice_operator.crds --write")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
