"""The reconcile planner (plan.py) on namespaces read from an in-memory fake of the API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sluice_operator.kube import Body
from sluice_operator.plan import NamespacePlan, count_sidecars, policy_status
from sluice_operator.reconcile import read_and_plan
from sluice_operator.workloads import KEY_SECRETS_ANNOTATION, MISSING_KEYS_ANNOTATION
from tests.operator.fake_kube import (
    ANTHROPIC,
    OPENAI,
    FakeKube,
    budget,
    deployment,
    pod,
    policy,
)

NOW = "2026-12-01T15:00:00Z"
STUDIO = {"matchLabels": {"app": "studio"}}


async def plan_of(kube: FakeKube, known: dict[str, dict[str, str]] | None = None) -> NamespacePlan:
    plan = await read_and_plan(kube, "team-a", known)  # type: ignore[arg-type]
    assert plan is not None
    return plan


def statuses(plan: NamespacePlan, applied: dict[str, int]) -> dict[str, tuple[Any, list[Any]]]:
    return {
        r.body["metadata"]["name"]: policy_status(r, NOW) for r in count_sidecars(plan, applied)
    }


def condition(patch: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in patch["conditions"] if c["type"] == kind)


async def test_higher_priority_policy_wins_whatever_the_names() -> None:
    kube = FakeKube(
        policies_=[
            policy("a-low", {"selector": STUDIO, "providers": [OPENAI]}),
            policy("z-high", {"selector": STUDIO, "priority": 10, "providers": [ANTHROPIC]}),
        ],
        deployments_=[deployment("studio", {"app": "studio"})],
    )
    plan = await plan_of(kube)
    (workload,) = plan.workloads
    assert [p["name"] for p in workload.document["providers"]] == ["anthropic"]
    assert [r.body["metadata"]["name"] for r in workload.policies] == ["a-low", "z-high"]


async def test_equal_priority_falls_back_to_name_order() -> None:
    kube = FakeKube(
        policies_=[
            policy("b", {"selector": STUDIO, "providers": [ANTHROPIC]}),
            policy("a", {"selector": STUDIO, "providers": [OPENAI]}),
        ],
        deployments_=[deployment("studio", {"app": "studio"})],
    )
    (workload,) = (await plan_of(kube)).workloads
    assert [p["name"] for p in workload.document["providers"]] == ["openai"]


async def test_workload_no_policy_selects_gets_the_built_in_defaults() -> None:
    kube = FakeKube(
        policies_=[policy("other", {"selector": {"matchLabels": {"app": "x"}}, "providers": []})],
        deployments_=[deployment("studio", {"app": "studio"})],
    )
    (workload,) = (await plan_of(kube)).workloads
    assert [p["name"] for p in workload.document["providers"]] == ["openai", "anthropic"]
    assert workload.policies == []


async def test_only_opted_in_deployments_are_planned() -> None:
    plain = deployment("plain", {"app": "plain"})
    plain["spec"]["template"]["metadata"]["annotations"] = {}
    kube = FakeKube(deployments_=[plain, deployment("studio", {"app": "studio"})])
    assert [w.workload.name for w in (await plan_of(kube)).workloads] == ["studio"]
    kube.namespace_labels_ = {"sluice.dev/inject": "enabled"}
    assert [w.workload.name for w in (await plan_of(kube)).workloads] == ["plain", "studio"]


KEYED = {**OPENAI, "apiKeySecretRef": {"name": "openai", "key": "apiKey"}}


def reported(name: str, version: str, missing: str | None) -> dict[str, Any]:
    """A pod whose sidecar runs ``version`` and reported ``missing`` (None: no report)."""
    body = pod(name, "studio", running=version)
    if missing is not None:
        body["metadata"]["annotations"][MISSING_KEYS_ANNOTATION] = missing
    return body


async def test_a_policy_naming_a_secret_applies_with_its_keys_unchecked() -> None:
    """The operator reads no Secret: the policy is valid and reaches the sidecars; whether
    the key is there is Unknown until a sidecar running it reports."""
    kube = FakeKube(
        policies_=[policy("studio", {"selector": STUDIO, "providers": [KEYED]})],
        deployments_=[deployment("studio", {"app": "studio"})],
        pods_=[pod("studio-1", "studio")],
    )
    plan = await plan_of(kube)
    (workload,) = plan.workloads
    assert [p["name"] for p in workload.document["providers"]] == ["openai"]
    patch, events = statuses(plan, {"studio": 1})["studio"]
    assert condition(patch, "Valid")["status"] == "True"
    keys = condition(patch, "KeysPresent")
    assert (keys["status"], keys["reason"]) == ("Unknown", "KeysUnchecked")
    assert condition(patch, "Ready")["status"] == "True"
    assert events == []
    # A report on an older configuration says nothing about this one.
    kube.pods_ = [reported("studio-1", "sha256:older", "openai/apiKey")]
    patch, _ = statuses(await plan_of(kube), {})["studio"]
    assert condition(patch, "KeysPresent")["reason"] == "KeysUnchecked"


async def test_a_key_a_sidecar_found_unmounted_is_reported_once_naming_secret_and_key() -> None:
    kube = FakeKube(
        policies_=[policy("studio", {"selector": STUDIO, "providers": [KEYED]})],
        deployments_=[deployment("studio", {"app": "studio"})],
    )
    version = (await plan_of(kube)).workloads[0].version
    kube.pods_ = [reported("studio-1", version, "openai/apiKey"), reported("studio-2", version, "")]
    patch, events = statuses(await plan_of(kube), {})["studio"]
    keys = condition(patch, "KeysPresent")
    assert (keys["status"], keys["reason"]) == ("False", "KeyMissing")
    assert keys["message"].startswith(
        "provider openai: Secret openai key apiKey is not mounted in 1 pod(s) (team-a/studio-1)"
    )
    ready = condition(patch, "Ready")
    assert (ready["status"], ready["message"]) == ("False", keys["message"])
    assert [(e.type, e.reason, e.message) for e in events] == [
        ("Warning", "KeyMissing", keys["message"])
    ]
    kube.policies_[0]["status"] = patch  # still missing on the next run: no second Event
    _, events = statuses(await plan_of(kube), {})["studio"]
    assert events == []

    # What a push just answered counts before the pods' annotations say it.
    plan = await plan_of(kube)
    just = {"uid-studio-1": set(), "uid-studio-2": set()}
    reports = {r.body["metadata"]["name"]: r for r in count_sidecars(plan, {}, just)}
    patch, _ = policy_status(reports["studio"], NOW)
    assert patch is not None
    keys = condition(patch, "KeysPresent")
    assert (keys["status"], keys["reason"]) == ("True", "KeysPresent")
    assert "2 sidecar(s)" in keys["message"]
    assert condition(patch, "Ready")["status"] == "True"


async def test_a_policy_naming_no_key_has_its_keys_present() -> None:
    kube = FakeKube(policies_=[policy("plain", {"selector": STUDIO, "providers": [OPENAI]})])
    patch, _ = statuses(await plan_of(kube), {})["plain"]
    keys = condition(patch, "KeysPresent")
    assert (keys["status"], keys["reason"]) == ("True", "NoKeys")


async def test_model_invalid_policy_reports_the_models_problems() -> None:
    kube = FakeKube(policies_=[policy("bad", {"providers": [{"name": "x", "type": "nope"}]})])
    (report,) = (await plan_of(kube)).reports
    assert report.problems and "type" in report.problems[0]


async def test_policies_that_do_not_compile_together_leave_new_pods_the_defaults() -> None:
    """Nothing stored for the workload yet: its pods get the built-in defaults (with the
    budgets that select it), so a new Pod still becomes Ready, and each policy says so."""
    kube = FakeKube(
        policies_=[policy("studio", {"selector": STUDIO, "providers": []})],
        budgets_=[budget("daily", {"selector": STUDIO, "limits": {"costUSD": "5"}})],
        deployments_=[deployment("studio", {"app": "studio"})],
        pods_=[pod("studio-1", "studio")],
    )
    plan = await plan_of(kube)
    assert len(plan.problems) == 1 and "do not compile together" in plan.problems[0]
    (workload,) = plan.workloads
    assert [p["name"] for p in workload.document["providers"]] == ["openai", "anthropic"]
    assert [b["name"] for b in workload.document["budgets"]] == ["daily"]
    assert workload.config_map.name == "sluice-config-studio"
    assert [p["metadata"]["name"] for p in workload.stale] == ["studio-1"]
    assert workload.policies == []  # its sidecars do not run the policy's configuration
    patch, events = statuses(plan, {"studio": 1})["studio"]
    valid = condition(patch, "Valid")
    assert valid["status"] == "False" and "do not compile together" in valid["message"]
    assert "team-a/studio runs the built-in defaults" in valid["message"]
    assert [e.reason for e in events] == ["InvalidPolicy"]


async def test_policies_that_do_not_compile_together_keep_the_last_good_configuration() -> None:
    good = {"selector": STUDIO, "providers": [OPENAI]}
    kube = FakeKube(
        policies_=[policy("studio", good)],
        deployments_=[deployment("studio", {"app": "studio"})],
        pods_=[pod("studio-1", "studio")],
    )
    (stored,) = (await plan_of(kube)).workloads
    kube.config_maps[stored.config_map.name] = {
        "metadata": {"annotations": stored.config_map.annotations},
        "data": stored.config_map.data,
    }
    kube.pods_ = [pod("studio-1", "studio", running=stored.version), pod("studio-2", "studio")]
    kube.policies_ = [policy("studio", {"selector": STUDIO, "providers": []}, generation=2)]
    plan = await plan_of(kube)
    (workload,) = plan.workloads
    assert (workload.version, workload.document) == (stored.version, stored.document)
    assert workload.config_map.data == stored.config_map.data
    assert [p["metadata"]["name"] for p in workload.stale] == ["studio-2"]  # a new pod
    patch, _ = statuses(plan, {"studio": 1})["studio"]
    message = condition(patch, "Valid")["message"]
    assert f"team-a/studio keeps its last good configuration {stored.version}" in message


@dataclass
class CountingKube(FakeKube):
    config_map_reads: list[str] = field(default_factory=list)

    async def config_map(self, namespace: str, name: str) -> Body | None:
        self.config_map_reads.append(name)
        return await super().config_map(namespace, name)


async def test_stored_configurations_are_read_only_for_workloads_that_fall_back() -> None:
    kube = CountingKube(
        policies_=[policy("studio", {"selector": STUDIO, "providers": [OPENAI]})],
        deployments_=[
            deployment("studio", {"app": "studio"}),
            deployment("batch", {"app": "batch"}),
        ],
        pods_=[pod("studio-1", "studio"), pod("batch-1", "batch")],
    )
    await plan_of(kube)
    assert kube.config_map_reads == []  # every workload compiled: nothing to fall back on
    kube.policies_ = [policy("studio", {"selector": STUDIO, "providers": []}, generation=2)]
    plan = await plan_of(kube)
    assert kube.config_map_reads == ["sluice-config-studio"]
    assert len(plan.problems) == 1 and plan.unread_fallbacks == []


async def test_ready_pods_not_running_the_version_are_pushed_to() -> None:
    kube = FakeKube(
        policies_=[policy("studio", {"selector": STUDIO, "providers": [OPENAI]})],
        deployments_=[deployment("studio", {"app": "studio"})],
        pods_=[
            pod("studio-1", "studio"),
            pod("studio-2", "studio", ready=False),
            pod("studio-3", "studio", deleting=True),
        ],
    )
    (workload,) = (await plan_of(kube)).workloads
    assert [p["metadata"]["name"] for p in workload.stale] == ["studio-1"]
    assert [p["metadata"]["name"] for p in workload.live] == ["studio-1", "studio-2"]
    assert workload.synced == 0
    assert workload.config_map.name == "sluice-config-studio"
    assert workload.config_map.annotations == {"sluice.dev/config-version": workload.version}

    # Annotated with the version, or known to this process as pushed: nothing to push.
    kube.pods_[0] = pod("studio-1", "studio", running=workload.version)
    (again,) = (await plan_of(kube)).workloads
    assert (again.stale, again.synced) == ([], 1)
    known = {"studio": {"uid-studio-2": workload.version}}
    assert (await plan_of(kube, known)).workloads[0].running == {
        "uid-studio-1": workload.version,
        "uid-studio-2": workload.version,
    }


async def test_status_counts_sidecars_and_is_not_rewritten_when_unchanged() -> None:
    kube = FakeKube(
        policies_=[policy("studio", {"selector": STUDIO, "providers": [OPENAI]})],
        deployments_=[deployment("studio", {"app": "studio"})],
        pods_=[pod("studio-1", "studio"), pod("studio-2", "studio")],
    )
    patch, events = statuses(await plan_of(kube), {"studio": 1})["studio"]
    assert events == []
    assert patch["sidecars"] == {"desired": 2, "synced": 1, "summary": "1/2"}
    assert patch["workloads"] == ["team-a/studio"]
    assert condition(patch, "Synced")["reason"] == "Pending"
    assert condition(patch, "Ready")["message"] == "1/2 sidecars run this policy's configuration"

    patch, _ = statuses(await plan_of(kube), {"studio": 2})["studio"]
    assert condition(patch, "Ready") == {
        "type": "Ready",
        "status": "True",
        "reason": "Ready",
        "message": "applied to every selected sidecar",
        "observedGeneration": 1,
        "lastTransitionTime": NOW,
    }
    kube.policies_[0]["status"] = patch
    assert statuses(await plan_of(kube), {"studio": 2})["studio"] == (None, [])


async def test_new_provider_key_secret_rolls_the_pod_template() -> None:
    keyed = {**OPENAI, "apiKeySecretRef": {"name": "openai", "key": "apiKey"}}
    kube = FakeKube(
        policies_=[policy("studio", {"selector": STUDIO, "providers": [keyed]})],
        deployments_=[deployment("studio", {"app": "studio"})],
    )
    (workload,) = (await plan_of(kube)).workloads
    annotations = workload.rollout["spec"]["template"]["metadata"]["annotations"]  # type: ignore[index]
    assert annotations == {KEY_SECRETS_ANNOTATION: "openai/apiKey"}
    kube.deployments_ = [
        deployment("studio", {"app": "studio"}, **{KEY_SECRETS_ANNOTATION: "openai/apiKey"})
    ]
    assert (await plan_of(kube)).workloads[0].rollout is None


async def test_budgets_that_select_the_workload_are_compiled_in() -> None:
    kube = FakeKube(
        budgets_=[
            budget("mine", {"selector": STUDIO, "limits": {"costUSD": 5}}),
            budget("theirs", {"selector": {"matchLabels": {"app": "x"}}, "limits": {"tokens": 9}}),
            budget("broken", {"period": "hourly"}),  # invalid: skipped, never enforced
        ],
        deployments_=[deployment("studio", {"app": "studio"})],
    )
    (workload,) = (await plan_of(kube)).workloads
    assert [b["name"] for b in workload.document["budgets"]] == ["mine"]


async def test_a_namespace_being_deleted_plans_nothing() -> None:
    assert await read_and_plan(FakeKube(namespace_labels_=None), "team-a") is None  # type: ignore[arg-type]


async def test_each_configmap_is_owned_by_its_deployment() -> None:
    kube = FakeKube(
        deployments_=[deployment("studio", {"app": "studio"}), deployment("batch", {"app": "b"})]
    )
    owners = {
        w.config_map.name: w.config_map.owner_references for w in (await plan_of(kube)).workloads
    }
    assert owners == {
        f"sluice-config-{name}": [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": name,
                "uid": f"uid-{name}",
                "controller": True,
                "blockOwnerDeletion": False,
            }
        ]
        for name in ("studio", "batch")
    }


async def test_pods_of_any_workload_get_a_configuration_without_a_rollout() -> None:
    """A StatefulSet's, a Job's or a bare Pod's injected pods: a sidecar never configured
    would never be Ready."""
    member = pod("db-0", "db")
    member["metadata"]["labels"]["app"] = "db"
    kube = FakeKube(
        policies_=[
            policy("db", {"selector": {"matchLabels": {"app": "db"}}, "providers": [OPENAI]})
        ],
        pods_=[member],
    )
    (workload,) = (await plan_of(kube)).workloads
    assert workload.config_map.name == "sluice-config-db"
    assert [p["metadata"]["name"] for p in workload.stale] == ["db-0"]
    assert workload.rollout is None  # no pod template of ours to patch
    assert [r.body["metadata"]["name"] for r in workload.policies] == ["db"]


def uninjected(name: str, labels: dict[str, str], **extra: Any) -> dict[str, Any]:
    """A pod as the API server admitted it without the webhook: no sidecar, no injected label."""
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "labels": labels, **extra},
        "spec": {"containers": [{"name": "app"}]},
        "status": {"phase": "Running"},
    }


async def test_opted_in_pods_without_the_sidecar_are_reported_on_their_policies() -> None:
    kube = FakeKube(
        policies_=[policy("studio", {"selector": STUDIO, "providers": [OPENAI]})],
        deployments_=[deployment("studio", {"app": "studio"})],
        pods_=[
            pod("studio-1", "studio"),
            uninjected("studio-2", {"app": "studio", "sluice.dev/inject": "true"}),
            uninjected("tool", {"app": "tool"}, annotations={"sluice.dev/inject": "true"}),
            uninjected("plain", {"app": "studio"}),  # never opted in
            uninjected("node", {"app": "studio", "sluice.dev/inject": "true"})
            | {"spec": {"hostNetwork": True}},  # skipped on purpose
        ],
    )
    plan = await plan_of(kube)
    assert [(m.name, m.policies) for m in plan.missing] == [
        ("studio-2", ["studio"]),
        ("tool", []),
    ]
    assert plan.missing[0].event().reason == "SidecarMissing"
    patch, events = statuses(plan, {})["studio"]
    injected = condition(patch, "Injected")
    assert (injected["status"], injected["reason"]) == ("False", "SidecarMissing")
    assert "team-a/studio-2" in injected["message"] and "rollout restart" in injected["message"]
    assert condition(patch, "Ready")["status"] == "False"
    assert [e.reason for e in events] == ["SidecarMissing"]


async def test_a_namespace_label_reports_every_pod_that_came_before_it() -> None:
    kube = FakeKube(
        namespace_labels_={"sluice.dev/inject": "enabled"},
        pods_=[
            uninjected("old", {"app": "x"}),
            uninjected("out", {"app": "x", "sluice.dev/inject": "false"}),
            uninjected("done", {"app": "x"}) | {"status": {"phase": "Succeeded"}},
        ],
    )
    assert [m.name for m in (await plan_of(kube)).missing] == ["old"]
