"""Certificates made on the spot for bad-input tests: leaves, intermediates and roots, right or wrong."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rotation.adapters.issuers.files import FileIssuer
from rotation.core import certs

FQDN = "cluster.test.local"


def make_cert(
    issuer_key: ec.EllipticCurvePrivateKey | None = None,
    issuer_name: str | None = None,
    *,
    hosts: tuple[str, ...] = (FQDN, f"*.{FQDN}"),
    days: tuple[int, int] = (-1, 60),
    ca: bool = False,
    cn: str = FQDN,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name or cn)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=days[0]))
        .not_valid_after(now + dt.timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False
        ).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer_key or key, hashes.SHA256()), key


def write_pair(directory: Path, cert_pems: list[str], key_pem: str) -> FileIssuer:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "full.pem").write_text("".join(cert_pems))
    (directory / "key.pem").write_text(key_pem)
    return FileIssuer("byo", directory / "full.pem", directory / "key.pem")


def chain_with_intermediate(**leaf: object) -> tuple[list[str], str]:
    root, root_key = make_cert(ca=True, cn="Test Root")
    inter, inter_key = make_cert(root_key, "Test Root", ca=True, cn="Test Intermediate")
    leaf_cert, leaf_key = make_cert(inter_key, "Test Intermediate", **leaf)  # type: ignore[arg-type]
    return [certs.cert_to_pem(leaf_cert), certs.cert_to_pem(inter)], certs.private_key_to_pem(leaf_key).reveal()
