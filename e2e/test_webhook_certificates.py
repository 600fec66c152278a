"""The webhook certificate rotated during the run on the real control plane: renewed before
expiry and served without a restart, the caBundle following, injections answered throughout;
then a certificate put into the Secret from outside (as cert-manager renews) served too."""

from __future__ import annotations

import base64
import datetime
import socket
import ssl
import time
from collections.abc import Iterator

import pytest
from cryptography import x509

from e2e.harness.binaries import Binaries
from e2e.harness.controlplane import ControlPlane
from e2e.harness.processes import wait_until
from e2e.operator_replicas import Replica, one_operator
from e2e.sluice import OPERATOR_NAMESPACE, WEBHOOK_CONFIGURATION
from sluice_operator import certificates

pytestmark = pytest.mark.e2e
SECRET = f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/secrets/sluice-webhook-tls"
VALIDITY_S, RENEW_BEFORE_S = 20, 14  # a generated certificate is renewed about every 6 s


@pytest.fixture(scope="module")
def cluster(
    k8s_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ControlPlane, Replica]]:
    extra = {
        "SLUICE_OPERATOR_WEBHOOK_CERT_VALIDITY_S": str(VALIDITY_S),
        "SLUICE_OPERATOR_WEBHOOK_CERT_RENEW_BEFORE_S": str(RENEW_BEFORE_S),
        "SLUICE_OPERATOR_WEBHOOK_CERT_CHECK_INTERVAL_S": "1",
    }
    with one_operator(k8s_binaries, tmp_path_factory.mktemp("certs-cluster"), extra) as cluster:
        yield cluster


def served(replica: Replica) -> x509.Certificate:
    """The certificate the webhook port presents now."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", replica.deployment.webhook_port), 5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def secret_files(cp: ControlPlane) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in cp.request("GET", SECRET)["data"].items()}


def ca_bundle(cp: ControlPlane) -> list[x509.Certificate]:
    path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
    hooks = cp.request("GET", path + WEBHOOK_CONFIGURATION)["webhooks"]
    (bundle,) = {h["clientConfig"]["caBundle"] for h in hooks}
    return x509.load_pem_x509_certificates(base64.b64decode(bundle))


def injected(cp: ControlPlane) -> bool:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "probe-", "labels": {"sluice.dev/inject": "true"}},
        "spec": {"containers": [{"name": "app", "image": "app"}]},
    }
    created = cp.request("POST", "/api/v1/namespaces/default/pods?dryRun=All", pod)
    spec = created["spec"]
    return any(c["name"] == "sluice-proxy" for c in spec.get("initContainers", []))


def test_certificates_rotate_during_the_run_without_a_restart(
    cluster: tuple[ControlPlane, Replica],
) -> None:
    cp, replica = cluster
    pid = replica.deployment.operator.pid if replica.deployment.operator else None
    first = served(replica)
    serials = {first.serial_number}
    probes = failures = 0
    deadline = time.monotonic() + 40
    while len(serials) < 3 and time.monotonic() < deadline:  # two renewals, injecting meanwhile
        probes += 1
        failures += not injected(cp)
        serials.add(served(replica).serial_number)
    assert len(serials) >= 3, "the generated certificate was not renewed twice"
    assert failures == 0, f"{failures} of {probes} admissions lost during the renewals"
    print(f"\nCERTIFICATES: {len(serials) - 1} renewals, {probes} admissions, none lost")
    assert replica.deployment.operator and replica.deployment.operator.pid == pid  # no restart
    latest = served(replica)
    assert latest.not_valid_after_utc > first.not_valid_after_utc

    # The Secret holds what is served; the bundle trusts its CA and the previous one.
    def consistent() -> tuple[dict[str, bytes], list[x509.Certificate]] | None:
        files, bundle = secret_files(cp), ca_bundle(cp)
        serial = x509.load_pem_x509_certificate(files["tls.crt"]).serial_number
        same = bundle == x509.load_pem_x509_certificates(files["ca.crt"])
        return (files, bundle) if same and serial == served(replica).serial_number else None

    files, bundle = wait_until(consistent, 10, what="Secret, caBundle and served certificate")
    assert len(bundle) == 2  # the new CA and the previous one, never a growing list
    x509.load_pem_x509_certificate(files["tls.crt"]).verify_directly_issued_by(bundle[0])

    # A certificate renewed outside the operator (as cert-manager does) is served as it comes.
    outside = certificates.generate(
        "sluice-operator", OPERATOR_NAMESPACE, ["127.0.0.1", "localhost"],
        datetime.timedelta(days=30),
    )  # fmt: skip
    secret = cp.request("GET", SECRET)
    secret["data"] = {
        "ca.crt": base64.b64encode(outside.ca_pem).decode(),
        "tls.crt": base64.b64encode(outside.cert_pem).decode(),
        "tls.key": base64.b64encode(outside.key_pem).decode(),
    }
    cp.request("PUT", SECRET, secret)
    expected = x509.load_pem_x509_certificate(outside.cert_pem)
    wait_until(
        lambda: served(replica).serial_number == expected.serial_number,
        15,
        what="the replaced certificate to be served",
    )
    wait_until(
        lambda: ca_bundle(cp) == x509.load_pem_x509_certificates(outside.ca_pem),
        15,
        what="the caBundle to be the new CA",
    )
    wait_until(lambda: injected(cp), 15, what="injection through the new certificate")
    expiry = replica.scrape()["sluice_operator_certificate_expiry_timestamp_seconds{}"]
    assert expiry == expected.not_valid_after_utc.timestamp()
