"""The webhook certificate's renewal rule and CA bundle (``certificates``)."""

from __future__ import annotations

import datetime
import time

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from sluice_operator import certificates


def make(days: float) -> certificates.TlsMaterial:
    return certificates.generate(
        "sluice-operator", "sluice-system", ["127.0.0.1"], datetime.timedelta(days=days)
    )


def test_a_certificate_is_due_for_renewal_inside_the_window_only() -> None:
    cert = make(90).cert_pem
    now = time.time()
    assert not certificates.due_for_renewal(cert, 30 * 86400, now)
    assert certificates.due_for_renewal(cert, 30 * 86400, now + 61 * 86400)
    assert certificates.due_for_renewal(cert, 30 * 86400, now + 91 * 86400)  # expired


def test_the_bundle_trusts_the_new_ca_and_only_the_previous_one() -> None:
    first, second, third = make(1), make(1), make(1)
    one = certificates.bundle(first.ca_pem, None)
    assert one == first.ca_pem
    two = certificates.bundle(second.ca_pem, one)
    three = certificates.bundle(third.ca_pem, two)
    cas = [c.public_bytes(Encoding.PEM) for c in x509.load_pem_x509_certificates(three)]
    assert cas == [third.ca_pem, second.ca_pem]  # the first CA is no longer trusted


def test_the_serving_certificate_is_signed_by_the_bundles_new_ca() -> None:
    made = make(1)
    cert = x509.load_pem_x509_certificate(made.cert_pem)
    ca = x509.load_pem_x509_certificates(certificates.bundle(made.ca_pem, make(1).ca_pem))[0]
    cert.verify_directly_issued_by(ca)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc < datetime.timedelta(days=2)
