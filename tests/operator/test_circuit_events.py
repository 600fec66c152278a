"""Which policy a sidecar's circuit change is posted on, the poll's place, the answer's bounds."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from sluice_operator.circuit_events import (
    CURSOR_ANNOTATION,
    TransitionsAnswer,
    cursor_of,
    occurrence,
    policy_for,
)
from sluice_operator.event_series import event_name
from sluice_operator.resources import read_policies
from sluice_operator.workloads import Workload
from tests.operator.fake_kube import ANTHROPIC, OPENAI, pod, policy

STUDIO = Workload("studio", {}, {"app": "studio"}, {})
ROW = {
    "sequence": 1,
    "time": "2026-12-01T10:00:00+00:00",
    "provider": "openai",
    "model": "*",
    "from": "closed",
    "to": "open",
    "reason": "5 consecutive failures",
}


def answer(*rows: dict, **fields: object) -> TransitionsAnswer:
    body = {"logId": "a1b2", "lastSequence": len(rows), "missed": 0, "transitions": list(rows)}
    return TransitionsAnswer.model_validate(body | fields)


def test_the_change_goes_to_the_policy_whose_providers_the_sidecar_runs() -> None:
    policies = read_policies(
        [
            policy("base", {"providers": [OPENAI, ANTHROPIC]}),
            policy(
                "studio",
                {
                    "selector": {"matchLabels": {"app": "studio"}},
                    "priority": 10,
                    "providers": [OPENAI],
                },
            ),
            policy("tuning", {"priority": 20, "retry": {"maxAttempts": 2}}),  # no providers
            policy(
                "other",
                {
                    "selector": {"matchLabels": {"app": "other"}},
                    "priority": 99,
                    "providers": [OPENAI],
                },
            ),
        ]
    )
    chosen = policy_for(policies, STUDIO, "openai")
    assert chosen is not None and chosen["metadata"]["name"] == "studio"
    # The highest policy with providers decides them all: anthropic is not the workload's.
    assert policy_for(policies, STUDIO, "anthropic") is None


def test_without_a_policy_naming_the_provider_there_is_none() -> None:
    assert policy_for(read_policies([]), STUDIO, "openai") is None
    invalid = read_policies([policy("broken", {"providers": [{"name": "Bad Name"}]})])
    assert policy_for(invalid, STUDIO, "openai") is None


def test_the_place_is_read_from_the_pod_annotation() -> None:
    body = pod("studio-1", "studio")
    assert cursor_of(body) == ("", 0)
    body["metadata"]["annotations"][CURSOR_ANNOTATION] = "a1b2:17"
    assert cursor_of(body) == ("a1b2", 17)
    body["metadata"]["annotations"][CURSOR_ANNOTATION] = "a1b2:seventeen"
    assert cursor_of(body) == ("", 0)  # a hand-edited value starts again rather than fail


def test_an_occurrence_names_circuit_pod_states_and_reason() -> None:
    target = policy("studio", {"providers": [OPENAI]})
    target["metadata"]["uid"] = "uid-policy"
    row = answer(ROW).transitions[0]
    found = occurrence(target, pod("studio-1", "studio"), row)
    assert (found.type, found.reason) == ("Warning", "CircuitOpened")
    assert found.message == "circuit openai on pod studio-1: closed -> open: 5 consecutive failures"
    assert found.at == dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC)
    closing = answer(ROW | {"from": "half-open", "to": "closed", "model": "gpt-4o"}).transitions[0]
    closed = occurrence(target, pod("studio-1", "studio"), closing)
    assert (closed.type, closed.reason) == ("Normal", "CircuitClosed")
    assert closed.message.startswith("circuit openai/gpt-4o on pod studio-1: half-open -> closed")
    assert event_name(target, found.key) != event_name(target, closed.key)
    assert event_name(target, found.key) == event_name(target, found.key)


@pytest.mark.parametrize(
    "bad",
    [
        {"transitions": [ROW] * 257},
        {"logId": "../../etc"},
        {"transitions": [ROW | {"to": "exploded"}]},
        {"transitions": [ROW | {"reason": "x" * 2000}]},
        {"missed": -1},
    ],
)
def test_an_answer_outside_the_sidecars_bounds_is_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        answer(ROW, **bad)
