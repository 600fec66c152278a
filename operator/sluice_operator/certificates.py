"""The webhook's TLS material: a private CA and a serving certificate, made and renewed.

Pure crypto (``webhook_tls`` keeps the material in its Secret and serves it): ``generate``
makes a CA and a serving certificate, ``due_for_renewal`` says when to replace one, and
``bundle`` keeps the previous CA trusted beside the new one while replicas switch over.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALIDITY = datetime.timedelta(days=3650)  # the CA's: a new one comes with every renewal


@dataclass(frozen=True)
class TlsMaterial:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def expiry_timestamp(cert_pem: bytes) -> float:
    """When a PEM certificate (the first in the file) stops being valid, as Unix time."""
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc.timestamp()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def due_for_renewal(cert_pem: bytes, renew_before_s: float, now: float) -> bool:
    """Whether a certificate expires within ``renew_before_s`` seconds of ``now`` (Unix)."""
    return expiry_timestamp(cert_pem) - now < renew_before_s


def bundle(new_ca_pem: bytes, old_bundle_pem: bytes | None) -> bytes:
    """The new CA and the first CA of the old bundle: clients keep trusting the certificate
    a replica still serves until it reloads (one previous CA, never a growing list)."""
    if not old_bundle_pem:
        return new_ca_pem
    previous = x509.load_pem_x509_certificates(old_bundle_pem)[0]
    return new_ca_pem + previous.public_bytes(serialization.Encoding.PEM)


def generate(
    service: str,
    namespace: str,
    extra_sans: list[str],
    validity: datetime.timedelta = VALIDITY,
) -> TlsMaterial:
    """A new CA and a serving certificate for the Service's names, valid for ``validity``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("sluice-webhook-ca")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
        *extra_sans,
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{service}.{namespace}.svc"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(_san(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return TlsMaterial(
        ca_pem=ca.public_bytes(pem),
        cert_pem=cert.public_bytes(pem),
        key_pem=key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
