"""The webhook's TLS: a private CA and a serving certificate, made, renewed and served.

``generate`` makes a CA and a serving certificate, ``due_for_renewal`` says when to replace
one, and ``bundle`` keeps the previous CA trusted beside the new one while replicas switch
over. ``WebhookTls`` keeps the material current while the operator runs (``handlers``).

Generated (default): the material lives in Secret ``sluice-webhook-tls``, so every replica and
restart serves the same certificate. Every ``webhook_cert_check_interval_s`` each replica
re-reads the Secret; the first to find the certificate due renews it (a new CA and serving
certificate, the Secret replaced only if unchanged since read, so replicas never race), and
the caBundle holds the new CA beside the previous one until every replica serves the new one.
With cert-manager (``webhook_cert_dir``) the kubelet swaps the mounted files on renewal and
the same check picks them up. A change (renewed here, by a peer, by cert-manager or by hand)
is loaded into the SSL context the listener already serves with: the next handshake presents
it, no connection is dropped and no listener restarts (kopf's own file watch would restart it,
and an admission arriving in that gap would go uninjected).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import os
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import kopf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sluice_operator.kube import Kube
from sluice_operator.metrics import OperatorMetrics
from sluice_operator.settings import OperatorSettings

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


logger = logging.getLogger("sluice.operator.certificates")
Files = dict[str, bytes]  # ca.crt, tls.crt, tls.key
NEVER_S = 10 * 365 * 86400.0  # kopf's file re-check interval: reloads are done here


class WebhookTls:
    def __init__(self, kube: Kube, settings: OperatorSettings, metrics: OperatorMetrics) -> None:
        self.kube = kube
        self.settings = settings
        self.metrics = metrics
        self._served: Files | None = None
        self._pem = Path(tempfile.mkdtemp(prefix="sluice-webhook-")) / "tls.pem"
        self.context = ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH)

    async def start(self) -> kopf.WebhookServer:
        """Material in place, caBundle current; the server kopf runs with it."""
        await self.refresh()
        return kopf.WebhookServer(
            addr=self.settings.webhook_addr,
            port=self.settings.webhook_port,
            context=self.context,
            certfile=str(self._pem),
            pkeyfile=str(self._pem),
            file_check_interval=NEVER_S,
        )

    async def run(self) -> None:
        """Check for renewal and changes until cancelled; a failed check is retried."""
        while True:
            await asyncio.sleep(self.settings.webhook_cert_check_interval_s)
            try:
                await self.refresh()
            except Exception:  # the API server may be away: keep serving what we have
                logger.exception("checking the webhook certificate failed")

    async def refresh(self) -> None:
        files = await (self._mounted() if self.settings.webhook_cert_dir else self._kept())
        if files == self._served:
            return
        _write_atomically(self._pem, files["tls.crt"] + files["tls.key"])
        # One synchronous call on the event loop: no handshake sees half of the pair.
        self.context.load_cert_chain(self._pem)
        if not await self.kube.set_ca_bundle(self.settings.webhook_configuration, files["ca.crt"]):
            logger.warning(
                "MutatingWebhookConfiguration %s not found: pods will not be injected until "
                "it exists",
                self.settings.webhook_configuration,
            )
        expiry = expiry_timestamp(files["tls.crt"])
        self.metrics.set_certificate_expiry(expiry)
        logger.info(
            "serving the webhook certificate valid until %s",
            datetime.datetime.fromtimestamp(expiry, datetime.UTC).isoformat(),
        )
        self._served = files

    async def _mounted(self) -> Files:
        directory = Path(self.settings.webhook_cert_dir or "")
        return {name: (directory / name).read_bytes() for name in ("ca.crt", "tls.crt", "tls.key")}

    async def _kept(self) -> Files:
        """The Secret's material: made when missing, renewed when due."""
        settings = self.settings
        namespace, name = settings.namespace, settings.webhook_tls_secret
        while True:
            found = await self.kube.tls_secret(namespace, name)
            if found is None:
                made = self._generate(None)
                if await self.kube.create_tls_secret(namespace, name, made):
                    return made
                continue  # another replica made one first: serve theirs
            files, version = found
            if not due_for_renewal(
                files["tls.crt"], settings.webhook_cert_renew_before_s, time.time()
            ):
                return files
            renewed = self._generate(files.get("ca.crt"))
            if await self.kube.replace_tls_secret(namespace, name, renewed, version):
                logger.info("renewed the webhook certificate")
                return renewed

    def _generate(self, old_bundle: bytes | None) -> Files:
        settings = self.settings
        extra = [n.strip() for n in settings.webhook_extra_sans.split(",") if n.strip()]
        validity = datetime.timedelta(seconds=settings.webhook_cert_validity_s)
        made = generate(settings.webhook_service, settings.namespace, extra, validity)
        return {
            "ca.crt": bundle(made.ca_pem, old_bundle),
            "tls.crt": made.cert_pem,
            "tls.key": made.key_pem,
        }


def _write_atomically(path: Path, content: bytes) -> None:
    """Readers see the old file or the new one, never half of it (kopf polls this file)."""
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(content)
    temporary.chmod(0o600)
    os.replace(temporary, path)
