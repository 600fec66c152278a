"""A policy naming a provider-key Secret that does not exist yet, on the real control plane.

The operator never reads that Secret (its ClusterRole has no right to): the webhook projects it
into the sidecar as an optional volume, the sidecar says which keys its Pod has not mounted,
and the policy's ``KeysPresent`` condition says so. The Pod still gets its configuration and
becomes ready; a call to that provider gets a clear 503 until the Secret is created.

The harness's kubelet is fake: it writes a Pod's Secret files once, when it starts the Pod. A
real kubelet refreshes a Secret volume at its sync period (about a minute, plus its cache's
time to live), so a Secret created later reaches a running Pod within a minute or two; the test
plays that refresh by writing the file itself, where ``sidecar_launch`` mounted the volume.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import openai
import pytest

from e2e.harness.controlplane import ControlPlane
from e2e.harness.processes import wait_until
from e2e.sluice import SluiceDeployment, sidecar_launch
from e2e.workloads import (
    admin_token,
    condition,
    deployment,
    policy,
    policy_status,
    running_sidecars,
)
from sluice_sidecar.contract.pod import ADMIN_PORT, DATA_PORT

pytestmark = pytest.mark.e2e
SECRET, KEY = "sim-key", "apiKey"


def call(ip: str) -> str:
    """One chat call through the Pod's sidecar: "ok", or the error code it answered."""
    client = openai.OpenAI(base_url=f"http://{ip}:{DATA_PORT}/v1", api_key="sk-app", max_retries=0)
    with client:
        try:
            client.chat.completions.create(
                model="sim-model", messages=[{"role": "user", "content": "hello"}]
            )
        except openai.APIStatusError as error:
            return f"{error.status_code} {error.code}: {error.message}"
    return "ok"


def keys_condition(cp: ControlPlane, namespace: str) -> dict:
    return condition(policy_status(cp, namespace, "keys"), "KeysPresent")


def test_a_missing_key_secret_leaves_the_pod_ready_and_is_reported_until_created(
    sluice: SluiceDeployment,
    control_plane: ControlPlane,
    namespace: str,
    fake_kubelet,
    tmp_path: Path,
    simulator: str,
) -> None:
    cp = control_plane
    ref = {"name": SECRET, "key": KEY}
    provider = {"name": "sim", "type": "openai-compatible", "baseUrl": simulator}
    keyed = policy("keys", "studio", providers=[{**provider, "apiKeySecretRef": ref}])
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=keyed)
    kubelet = fake_kubelet(namespace, "sluice.dev/injected=true", sidecar_launch(cp, tmp_path))
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=deployment("studio", 1))
    # The pod template names the Secret (a rollout, if the first pod came before it).
    wait_until(
        lambda: keys_condition(cp, namespace).get("reason") == "KeyMissing",
        60,
        what="KeysPresent=False (KeyMissing) on the policy",
    )
    (slot,) = running_sidecars(kubelet, 1)
    status = policy_status(cp, namespace, "keys")
    message = condition(status, "KeysPresent")["message"]
    assert f"provider sim: Secret {SECRET} key {KEY} is not mounted in 1 pod(s)" in message
    assert condition(status, "Valid")["status"] == "True"
    ready = condition(status, "Ready")
    assert (ready["status"], ready["message"]) == ("False", message)
    events = cp.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
    assert [e["message"] for e in events if e["reason"] == "KeyMissing"] == [message]
    # The sidecar runs the configuration (it is ready) and refuses the provider's calls.
    with urllib.request.urlopen(f"http://{slot.ip}:{ADMIN_PORT}/readyz", timeout=5) as answer:
        assert answer.status == 200
    refused = call(slot.ip)
    assert refused.startswith("503 provider_key_missing") and f"Secret {SECRET}" in refused

    cp.kubectl(
        "create", "secret", "generic", SECRET, "-n", namespace, f"--from-literal={KEY}=sk-sim"
    )
    # The kubelet's refresh of the projected volume, where sidecar_launch mounted it.
    mounted = tmp_path / slot.name / "providers" / SECRET / KEY
    mounted.parent.mkdir(parents=True, exist_ok=True)
    mounted.write_text("sk-sim")
    wait_until(lambda: call(slot.ip) == "ok", 30, what="the call to go through with the key")
    # The operator asks the sidecars that reported a key missing again, on its timer.
    wait_until(
        lambda: keys_condition(cp, namespace).get("status") == "True",
        30,
        what="KeysPresent=True once the key is mounted",
    )
    assert condition(policy_status(cp, namespace, "keys"), "Ready")["status"] == "True"
    assert admin_token(cp, namespace)  # the operator's own Secret, read by name
