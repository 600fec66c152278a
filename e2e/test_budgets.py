"""Budgets across replicas on the real control plane: spend of two sidecars is summed into
LlmBudget.status, a hard limit then blocks both, and a deleted pod's spend is kept."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest
import yaml

from e2e.harness.controlplane import ControlPlane
from e2e.harness.processes import wait_until
from e2e.sluice import SluiceDeployment, sidecar_admin, sidecar_launch
from e2e.workloads import admin_token, deployment, running_sidecars
from sluice_sidecar.contract.pod import DATA_PORT

pytestmark = pytest.mark.e2e
LIMIT = Decimal("0.01")
BUDGETS = "/apis/sluice.dev/v1alpha1/namespaces/{ns}/llmbudgets"
# A hard budget admits a call only if its estimate still fits under the limit, so spend
# reaches the limit (state Exceeded) only where the estimate is the actual cost. Priced on
# output alone, with the simulator's answer cut at max_tokens, every call costs exactly its
# estimate: OUTPUT_TOKENS * 400 / 1M = $0.002, and the limit is five calls.
OUTPUT_TOKENS = 5


def manifests(upstream: str) -> str:
    policy = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "LlmPolicy",
        "metadata": {"name": "priced"},
        "spec": {
            "selector": {"matchLabels": {"app": "studio"}},
            "providers": [{"name": "sim", "type": "openai-compatible", "baseUrl": upstream}],
            "pricing": {"sim-model": {"inputPer1M": 0, "outputPer1M": 400}},
        },
    }
    budget = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "LlmBudget",
        "metadata": {"name": "daily"},
        "spec": {
            "selector": {"matchLabels": {"app": "studio"}},
            "period": "daily",
            "limits": {"costUSD": float(LIMIT)},
            "enforcement": "hard",
        },
    }
    return yaml.safe_dump_all([policy, budget])


def call(slot, token: str | None = None) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(
        base_url=f"http://{slot.ip}:{DATA_PORT}/v1", api_key="sk-app", max_retries=0
    )
    with client:
        return client.chat.completions.create(
            model="sim-model",
            max_tokens=OUTPUT_TOKENS,
            messages=[{"role": "user", "content": "a short line about rivers"}],
        )


def usage_row(slot, token: str, budget: str) -> dict:
    rows = sidecar_admin(slot, token, "/admin/usage")["budgets"]
    return next(r for r in rows if r["budget"] == budget)


def own_spend(slot, token: str, budget: str) -> Decimal:
    return Decimal(usage_row(slot, token, budget)["spentUSD"])


def external_spend(slot, token: str, budget: str) -> Decimal:
    """What the operator last told the sidecar the other replicas spent."""
    return Decimal(usage_row(slot, token, budget)["externalUSD"])


def budget_status(cp: ControlPlane, namespace: str) -> dict:
    return cp.request("GET", f"{BUDGETS.format(ns=namespace)}/daily").get("status") or {}


def test_two_replicas_summed_then_blocked_and_nothing_lost(
    sluice: SluiceDeployment,
    control_plane: ControlPlane,
    namespace: str,
    fake_kubelet,
    simulator: str,
    tmp_path,
) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=manifests(simulator))
    kubelet = fake_kubelet(
        namespace, "sluice.dev/injected=true", sidecar_launch(control_plane, tmp_path)
    )
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=deployment("studio", 2))
    a, b = running_sidecars(kubelet, 2)
    token = admin_token(control_plane, namespace)
    budget = f"{namespace}/daily"
    # Both sidecars run the compiled budget before any traffic.
    wait_until(
        lambda: all(
            any(r["budget"] == budget for r in sidecar_admin(s, token, "/admin/usage")["budgets"])
            for s in (a, b)
        ),
        30,
        what="both sidecars to enforce the budget",
    )
    for slot in (a, a, b):
        assert call(slot).choices[0].message.content

    expected = own_spend(a, token, budget) + own_spend(b, token, budget)
    assert expected > 0
    status = wait_until(
        lambda: (
            (s := budget_status(control_plane, namespace))
            and Decimal(s.get("spentUSD", "0")) == expected
            and s
        ),
        30,
        what=f"LlmBudget.status.spentUSD to reach {expected}",
    )
    assert status["state"] in ("OK", "Warning", "Alert")
    assert status["periodStart"].endswith("T00:00:00+00:00")

    # Spend through sidecar A until it refuses; then B refuses too, through the operator's push.
    blocked = False
    for _ in range(40):
        try:
            call(a)
        except openai.RateLimitError as error:
            assert error.body["type"] == "budget_exceeded"  # type: ignore[index]
            blocked = True
            break
    assert blocked, "sidecar A never hit the hard budget"

    # B refuses once the operator has told it what A spent, not through spend of its own.
    spent_a = own_spend(a, token, budget)
    wait_until(
        lambda: external_spend(b, token, budget) == spent_a,
        30,
        what=f"sidecar B to be told the ${spent_a} sidecar A spent",
    )
    with pytest.raises(openai.RateLimitError) as refused:
        call(b)
    assert refused.value.body["type"] == "budget_exceeded"  # type: ignore[index]
    status = wait_until(
        lambda: (
            (s := budget_status(control_plane, namespace)) and s.get("state") == "Exceeded" and s
        ),
        30,
        what="the budget state Exceeded",
    )
    events = control_plane.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
    assert any(e["reason"] == "BudgetExceeded" for e in events)

    # A deleted pod's spend stays in the status (its sidecar reports on SIGTERM).
    before = Decimal(status["spentUSD"])
    control_plane.kubectl("scale", "-n", namespace, "deployment/studio", "--replicas=1")
    wait_until(lambda: len(kubelet.slots()) == 1, 30, what="one pod left")
    wait_until(
        lambda: len(budget_status(control_plane, namespace)["ledger"]["pods"]) == 1,
        30,
        what="the deleted pod moved to the retired spend",
    )
    after = budget_status(control_plane, namespace)
    assert Decimal(after["spentUSD"]) >= before
    assert Decimal(after["ledger"]["retired"]["spentUSD"]) > 0
