"""Certificates made on the spot for bad-input tests: leaves, intermediates and roots, right or wrong."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
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


def _der_length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def _der_element(der: bytes, at: int) -> tuple[int, int]:
    """(start of the content, end) of the DER element at ``at``."""
    first = der[at + 1]
    if first < 0x80:
        return at + 2, at + 2 + first
    count = first & 0x7F
    size = int.from_bytes(der[at + 2:at + 2 + count], "big")
    return at + 2 + count, at + 2 + count + size


def with_duplicate_extension(cert: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey) -> str:
    """``cert`` with its ExtendedKeyUsage extension's OID turned into its BasicConstraints' one (RFC 5280
    forbids an extension twice; OpenSSL still parses it), signed again by ``issuer_key``: a certificate whose
    signature verifies but whose extensions cannot be read."""
    der = cert.public_bytes(serialization.Encoding.DER)
    eku, basic = b"\x06\x03\x55\x1d\x25", b"\x06\x03\x55\x1d\x13"  # id-ce-extKeyUsage, id-ce-basicConstraints
    assert der.count(eku) == 1
    der = der.replace(eku, basic)
    content, _ = _der_element(der, 0)  # Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
    _, tbs_end = _der_element(der, content)
    _, alg_end = _der_element(der, tbs_end)
    tbs, algorithm = der[content:tbs_end], der[tbs_end:alg_end]
    signature = issuer_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    bit_string = b"\x03" + _der_length(len(signature) + 1) + b"\x00" + signature
    body = tbs + algorithm + bit_string
    return ssl.DER_cert_to_PEM_cert(b"\x30" + _der_length(len(body)) + body)
