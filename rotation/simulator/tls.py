"""Certificate material for the simulator: its CA, issuing, upload validation, server contexts.

Only ``cryptography`` and the stdlib ``ssl`` module are used here; nothing from the domain.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import ssl
import tempfile
import warnings
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

MAIN_NAMES: tuple[str, ...] = ("api", "cm", "proxy", "syncer", "metrics_exporter")
OPTIONAL_NAMES: tuple[str, ...] = (
    "ldap_client",
    "ccs_internode_encryption",
    "data_internode_encryption",
    "mtls_trusted_ca",
    "sso_service",
    "sso_issuer",
)
KNOWN_NAMES: frozenset[str] = frozenset(MAIN_NAMES + OPTIONAL_NAMES)
KEYLESS_NAMES: frozenset[str] = frozenset({"mtls_trusted_ca", "sso_issuer"})
# a bundle of CA certificates (old and new CA side by side while the client CA rotates), not a chain
TRUST_BUNDLE_NAMES: frozenset[str] = frozenset({"mtls_trusted_ca"})

_TLS_VERSIONS = {
    "1": ssl.TLSVersion.TLSv1,
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


class CertProblem(Exception):
    """An uploaded certificate was refused: carries the HTTP status and error body."""

    def __init__(self, status: int, error_code: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error_code = error_code
        self.description = description


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER encoding, lower-case hex (the domain's ``ServedCert.fingerprint``)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def fingerprint_der(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class LeafSpec:
    """The shape of a leaf the simulator's CA issues (tests build 2026-style certificates with it)."""

    common_name: str | None = ""  # "" -> the fqdn; None -> no subject at all (LE's tlsserver profile)
    sans: tuple[str, ...] = ()  # () -> fqdn, *.fqdn
    server_auth: bool = True
    client_auth: bool = True
    key_encipherment: bool = False
    key_type: str = "ecdsa"  # "ecdsa" (P-256) or "rsa"
    rsa_bits: int = 2048
    ocsp_url: str | None = None  # AIA OCSP responder URL

    @classmethod
    def documented(cls, fqdn: str, **changes: object) -> LeafSpec:
        """RS's documented profile for CA-signed cluster certificates (D-CREATE)."""
        sans = (fqdn, f"*.{fqdn}", f"internal.{fqdn}", f"*.internal.{fqdn}")
        return cls(**{"sans": sans, "key_encipherment": True, "key_type": "rsa", **changes})  # type: ignore[arg-type]

    @classmethod
    def tlsserver(cls, **changes: object) -> LeafSpec:
        """Like Let's Encrypt's 2026 ``tlsserver`` profile: no CN, serverAuth only, no keyEncipherment."""
        return cls(**{"common_name": None, "client_auth": False, **changes})  # type: ignore[arg-type]


@dataclass
class CertificateAuthority:
    """The simulator's own "<fqdn> self-signed CA"; its key never leaves memory."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, fqdn: str, not_before: dt.datetime, not_after: dt.datetime) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{fqdn} self-signed CA")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert=cert, key=key)

    @property
    def pem(self) -> str:
        return _cert_pem(self.cert)

    def issue(
        self, fqdn: str, not_before: dt.datetime, not_after: dt.datetime, spec: LeafSpec | None = None
    ) -> tuple[str, str]:
        """A leaf for ``fqdn`` shaped by ``spec`` (default: RS's own kind, a server+client ECDSA
        leaf for ``fqdn`` and ``*.fqdn``): returns (certificate PEM, key PEM)."""
        spec = spec or LeafSpec()
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
            rsa.generate_private_key(65537, spec.rsa_bits) if spec.key_type == "rsa"
            else ec.generate_private_key(ec.SECP256R1())
        )
        common_name = fqdn if spec.common_name == "" else spec.common_name
        subject = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(name) for name in (spec.sans or (fqdn, f"*.{fqdn}"))]), critical=not subject)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=spec.key_encipherment,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        usages = [oid for oid, wanted in ((ExtendedKeyUsageOID.SERVER_AUTH, spec.server_auth),
                                          (ExtendedKeyUsageOID.CLIENT_AUTH, spec.client_auth)) if wanted]
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        if spec.ocsp_url:
            builder = builder.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(spec.ocsp_url))]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return _cert_pem(cert), _key_pem(key)


@dataclass
class Material:
    """One certificate (leaf + the intermediates as uploaded) and its key, as a node holds it."""

    name: str
    chain_pem: str
    key_pem: str | None
    leaf: x509.Certificate
    fingerprint: str
    _contexts: dict[str, ssl.SSLContext] = field(default_factory=dict, repr=False)

    @property
    def not_after(self) -> dt.datetime:
        return self.leaf.not_valid_after_utc

    def context(self, min_version: str = "1.2", ciphers: str | None = None) -> ssl.SSLContext:
        """A server-side context presenting this certificate; built once per (minimum, cipher list)."""
        key = f"{min_version}|{ciphers or ''}"
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = build_server_context(self.chain_pem, self.key_pem or "", min_version, ciphers)
            self._contexts[key] = ctx
        return ctx


def build_server_context(
    chain_pem: str, key_pem: str, min_version: str = "1.2", ciphers: str | None = None
) -> ssl.SSLContext:
    """``load_cert_chain`` only reads files: write key + chain to a 0600 temp file, load, delete.

    The key is re-serialised as PKCS#8 so any format ``cryptography`` accepted also loads here;
    the chain is written as uploaded (OpenSSL skips text around the PEM blocks).

    ``ciphers`` (OpenSSL syntax) limits TLS <= 1.2 suites; TLS 1.3 suites cannot be limited from
    Python. A minimum below 1.2 also lowers the security level to 0: OpenSSL 3 refuses TLS
    1.0/1.1 at level 1 and above, so a real "min 1.0" server must do the same.
    """
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    minimum = _TLS_VERSIONS.get(min_version, ssl.TLSVersion.TLSv1_2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1 / TLSv1_1 are deprecated names
        ctx.minimum_version = minimum
    old = minimum < ssl.TLSVersion.TLSv1_2
    if ciphers or old:
        ctx.set_ciphers((ciphers or "DEFAULT") + (":@SECLEVEL=0" if old else ""))
    fd, path = tempfile.mkstemp(prefix="rs-sim-", suffix=".pem")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(key_pem)
            fh.write(chain_pem if chain_pem.endswith("\n") else chain_pem + "\n")
        ctx.load_cert_chain(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return ctx


def material_from_pems(name: str, chain_pem: str, key_pem: str | None) -> Material:
    """Trusted input (the simulator's own certificates): parse without the upload checks."""
    leaf = x509.load_pem_x509_certificates(chain_pem.encode())[0]
    return Material(name=name, chain_pem=chain_pem, key_pem=key_pem, leaf=leaf, fingerprint=fingerprint(leaf))


@dataclass(frozen=True)
class UploadItem:
    """One ``{name, certificate, key}`` object from an update request."""

    name: str
    certificate: str
    key: str | None


def validate_uploads(
    items: list[UploadItem], now: dt.datetime, known: frozenset[str] = KNOWN_NAMES
) -> list[Material]:
    """Check every item, stage by stage, and raise the first :class:`CertProblem`.

    Stages (each over all items before the next, so the stage order decides the code):
    unknown name (403; ``known`` is the cluster's names, see :mod:`.profile`) -> unparsable PEM
    (400) -> broken chain (400; not for trust bundles) -> key mismatch (400) -> leaf expired (406).
    The certificate profile rules (:func:`.profile.check_profiles`) come after.
    """
    for item in items:
        if item.name not in known:
            raise CertProblem(403, "unknown_certificate", f"Unknown certificate name {item.name!r}")
    parsed: list[tuple[list[x509.Certificate], PrivateKeyTypes | None]] = []
    for item in items:
        try:
            certs = x509.load_pem_x509_certificates(item.certificate.encode())
        except Exception as exc:
            raise CertProblem(
                400, "invalid_certificate", f"{item.name}: the certificate PEM cannot be parsed"
            ) from exc
        key: PrivateKeyTypes | None = None
        if item.key:
            try:
                key = serialization.load_pem_private_key(item.key.encode(), password=None)
            except Exception as exc:
                raise CertProblem(
                    400, "invalid_certificate", f"{item.name}: the private key PEM cannot be parsed"
                ) from exc
        elif item.name not in KEYLESS_NAMES:
            raise CertProblem(400, "invalid_certificate", f"{item.name}: a private key is required")
        parsed.append((certs, key))
    for item, (certs, _) in zip(items, parsed, strict=True):
        if item.name in TRUST_BUNDLE_NAMES:
            continue
        for position, (child, parent) in enumerate(zip(certs, certs[1:], strict=False)):
            try:
                child.verify_directly_issued_by(parent)
            except Exception as exc:
                raise CertProblem(
                    400, "invalid_chain",
                    f"{item.name}: certificate {position} in the chain is not signed by certificate "
                    f"{position + 1}",
                ) from exc
    for item, (certs, key) in zip(items, parsed, strict=True):
        if key is not None and _spki(key.public_key()) != _spki(certs[0].public_key()):  # type: ignore[attr-defined]
            raise CertProblem(
                400, "key_mismatch", f"{item.name}: the private key does not match the certificate"
            )
    for item, (certs, _) in zip(items, parsed, strict=True):
        if certs[0].not_valid_after_utc <= now:
            raise CertProblem(406, "cert_expired", f"{item.name}: the certificate is expired")
    return [
        Material(name=item.name, chain_pem=item.certificate, key_pem=item.key or None, leaf=certs[0],
                 fingerprint=fingerprint(certs[0]))
        for item, (certs, _) in zip(items, parsed, strict=True)
    ]


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
