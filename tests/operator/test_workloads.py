"""Opt-in, readiness and grouping of workloads (workloads.py, reading.py), and the webhook's
choice of provider-key Secrets, on plain bodies and the in-memory fake."""

from __future__ import annotations

import pytest

from sluice_operator.reading import group_workloads
from sluice_operator.webhook import provider_key_secrets
from sluice_operator.workloads import (
    MANAGED_ANNOTATION,
    Workload,
    opt_in_change,
    pod_ready,
)
from tests.operator.fake_kube import FakeKube, deployment, pod, policy


def workload(
    annotations: dict[str, str], template: dict[str, str], labels: dict[str, str] | None = None
) -> Workload:
    return Workload("studio", annotations, {"app": "studio", **(labels or {})}, template)


@pytest.mark.parametrize(
    ("annotations", "template", "namespace", "opted"),
    [
        ({"sluice.dev/inject": "true"}, {}, {}, True),
        ({}, {"sluice.dev/inject": "true"}, {}, True),
        ({}, {}, {"sluice.dev/inject": "enabled"}, True),
        ({"sluice.dev/inject": "false"}, {}, {"sluice.dev/inject": "enabled"}, False),
        ({"sluice.dev/inject": "true"}, {"sluice.dev/inject": "false"}, {}, False),
        ({}, {}, {}, False),
    ],
)
def test_opted_in(
    annotations: dict[str, str], template: dict[str, str], namespace: dict[str, str], opted: bool
) -> None:
    assert workload(annotations, template).opted_in(namespace) is opted


@pytest.mark.parametrize(
    ("label", "namespace", "opted"),
    [
        ("true", {}, True),
        ("false", {"sluice.dev/inject": "enabled"}, False),
    ],
)
def test_a_pod_template_label_opts_in_and_out(
    label: str, namespace: dict[str, str], opted: bool
) -> None:
    assert workload({}, {}, {"sluice.dev/inject": label}).opted_in(namespace) is opted


def test_the_gesture_is_copied_into_the_template_and_removed_with_it() -> None:
    change = opt_in_change(workload({"sluice.dev/inject": "true"}, {}))
    assert change is not None
    assert change.patch["metadata"]["annotations"] == {MANAGED_ANNOTATION: "true"}
    assert change.patch["spec"]["template"]["metadata"]["labels"] == {"sluice.dev/inject": "true"}
    copied = {"sluice.dev/inject": "true"}
    assert opt_in_change(workload({"sluice.dev/inject": "true"}, copied)) is None
    removed = opt_in_change(workload({MANAGED_ANNOTATION: "true"}, copied))
    assert removed is not None
    assert removed.patch["spec"]["template"]["metadata"]["annotations"] == {
        "sluice.dev/inject": None
    }
    # A template label the user set themselves is theirs: not managed, not removed.
    assert opt_in_change(workload({}, copied)) is None


@pytest.mark.parametrize(
    "template",
    [
        {"annotations": {"sluice.dev/inject": "false"}},
        {"labels": {"sluice.dev/inject": "false"}},
    ],
)
@pytest.mark.parametrize("managed", [False, True])
def test_a_pod_template_opt_out_wins_over_the_deployment_annotation(
    template: dict[str, dict[str, str]], managed: bool
) -> None:
    """The template's explicit "false" is never overwritten with the Deployment's "true", nor
    removed when the Deployment stops asking (with the operator's managed mark or without)."""
    annotations = {MANAGED_ANNOTATION: "true"} if managed else {}
    for wants in ({"sluice.dev/inject": "true"}, {}):
        opted_out = workload(
            {**annotations, **wants}, template.get("annotations", {}), template.get("labels")
        )
        assert opt_in_change(opted_out) is None
        assert not opted_out.opted_in({"sluice.dev/inject": "enabled"})


def test_a_started_sidecar_is_pushed_to_before_its_pod_is_ready() -> None:
    waiting = pod("a", "studio", ready=False)
    waiting["status"]["initContainerStatuses"] = [{"name": "sluice-proxy", "started": True}]
    assert pod_ready(waiting)
    waiting["status"]["initContainerStatuses"] = [{"name": "sluice-proxy", "started": False}]
    assert not pod_ready(waiting)


def test_pods_of_other_workloads_are_owned_by_their_controller_or_themselves() -> None:
    member = pod("db-0", "db")
    controller = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "u-db"}
    member["metadata"]["ownerReferences"] = [{**controller, "controller": True}]
    bare = pod("tool", "tool")
    grouped = group_workloads([], [member, pod("db-1", "db"), bare], {})
    owners = {w.name: w.owner_references() for w in grouped.others}
    assert owners["db"][0] == {**controller, "controller": False, "blockOwnerDeletion": False}
    assert owners["db"][1]["kind"] == "Pod"  # a member without a controller owns it too
    assert [(o["kind"], o["name"], o["uid"]) for o in owners["tool"]] == [
        ("Pod", "tool", "uid-tool")
    ]


def test_pod_ready_needs_an_ip_the_ready_condition_and_no_deletion() -> None:
    assert pod_ready(pod("a", "studio"))
    assert not pod_ready(pod("a", "studio", ready=False))
    assert not pod_ready(pod("a", "studio", deleting=True))
    no_ip = pod("a", "studio")
    del no_ip["status"]["podIP"]
    assert not pod_ready(no_ip)


def test_pods_of_other_workloads_are_grouped_by_their_own_labels() -> None:
    stray = pod("job-1", "nightly")
    stray["metadata"]["labels"]["app"] = "nightly"
    grouped = group_workloads(
        [deployment("studio", {"app": "studio", "tier": "web"})],
        [pod("studio-1", "studio"), stray],
        {},
    )
    (studio,) = grouped.deployments
    assert studio.labels == {"app": "studio", "tier": "web"}  # the template's, not the pod's
    assert [p["metadata"]["name"] for p in studio.pods] == ["studio-1"]
    (nightly,) = grouped.others
    assert (nightly.name, nightly.labels["app"]) == ("nightly", "nightly")


async def test_the_webhook_mounts_the_secrets_of_valid_selecting_policies_only() -> None:
    def keyed(secret: str) -> dict[str, object]:
        return {"name": "openai", "type": "openai", "apiKeySecretRef": {"name": secret, "key": "k"}}

    kube = FakeKube(
        policies_=[
            policy(
                "mine", {"selector": {"matchLabels": {"app": "studio"}}, "providers": [keyed("a")]}
            ),
            policy(
                "theirs", {"selector": {"matchLabels": {"app": "x"}}, "providers": [keyed("b")]}
            ),
            policy("broken", {"providers": [{**keyed("c"), "type": "nope"}]}),
        ]
    )
    found = await provider_key_secrets(kube, "team-a", {"app": "studio"})  # type: ignore[arg-type]
    assert found == {"a": ["k"]}
