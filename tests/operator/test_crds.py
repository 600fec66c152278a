"""crds/ is generated from the models: a model change without regenerating fails here."""

from __future__ import annotations

from sluice_operator import crds


def test_crd_files_match_the_models() -> None:
    stale = [
        name
        for name, crd in crds.all_crds().items()
        if (crds.CRD_DIR / name).read_text() != crds.render(crd)
    ]
    assert stale == [], "run: .venv/bin/python -m sluice_operator.crds --write"


def test_structural_conversion() -> None:
    defs = {"Inner": {"type": "object", "properties": {"x": {"type": "integer", "title": "X"}}}}
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "ref": {"$ref": "#/$defs/Inner"},
            "maybe": {
                "anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}],
                "default": None,
            },
            "free": {"type": "object"},
        },
    }
    node = crds.structural(schema, defs)
    assert node["properties"]["ref"] == {
        "type": "object",
        "properties": {"x": {"type": "integer"}},
        "default": {},
    }
    assert node["properties"]["maybe"] == {
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
        "nullable": True,
    }
    assert node["properties"]["free"]["x-kubernetes-preserve-unknown-fields"] is True
    assert "additionalProperties" not in node
