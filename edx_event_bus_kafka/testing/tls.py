"""Throw-away TLS material for test brokers: a certificate authority, and certificates it signs.

Everything is PEM (the format both librdkafka and Kafka's ``ssl.keystore.type=PEM`` read), with
unencrypted PKCS#8 keys, valid for a day. Server certificates name ``127.0.0.1`` and ``localhost``
so clients can keep hostname verification on. Uses ``cryptography``, which confluent-kafka's
schema-registry extra already installs.
"""
from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CertificateFiles:
    """Paths of one certificate and its private key (and both in one file, for Kafka keystores)."""

    certificate: Path
    key: Path
    keystore: Path


class CertificateAuthority:
    """A self-signed CA that writes its certificate and the certificates it issues into ``folder``."""

    def __init__(self, folder: Path, name: str = "edx-event-bus-kafka test CA"):
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = self._builder(self._name, self._key.public_key()).add_extension(
            x509.BasicConstraints(ca=True, path_length=0), critical=True,
        ).add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        self._certificate = self._sign(builder)
        self.certificate_path = self.folder / "ca.pem"
        self.certificate_path.write_bytes(self._pem(self._certificate))

    def issue(self, common_name: str, *, server: bool) -> CertificateFiles:
        """A certificate for ``common_name``: a server one for 127.0.0.1/localhost, or a client one."""
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = self._builder(subject, key.public_key()).add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True,
        ).add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
            ]), critical=False)
        certificate = self._sign(builder)
        safe = "".join(ch if ch.isalnum() else "-" for ch in common_name)
        files = CertificateFiles(
            certificate=self.folder / f"{safe}.crt.pem",
            key=self.folder / f"{safe}.key.pem",
            keystore=self.folder / f"{safe}.keystore.pem",
        )
        key_pem = self._key_pem(key)
        chain_pem = self._pem(certificate) + self._pem(self._certificate)
        files.certificate.write_bytes(chain_pem)
        files.key.write_bytes(key_pem)
        files.keystore.write_bytes(key_pem + chain_pem)
        for path in (files.key, files.keystore):
            path.chmod(0o600)
        return files

    # -- helpers -------------------------------------------------------------------------------

    def _builder(self, subject: Any, public_key: Any) -> Any:
        from cryptography import x509

        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(getattr(self, "_name", subject))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    def _sign(self, builder: Any) -> Any:
        from cryptography.hazmat.primitives import hashes

        return builder.sign(self._key, hashes.SHA256())

    @staticmethod
    def _pem(certificate: Any) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding

        return bytes(certificate.public_bytes(Encoding.PEM))

    @staticmethod
    def _key_pem(key: Any) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

        return bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
