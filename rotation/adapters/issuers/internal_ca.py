"""An issuer that signs with a CA whose certificate and key are local files.

Also ``init_ca`` to create such a CA (self-signed root) for labs and small deployments.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from rotation.config.files import read_file
from rotation.core import certs
from rotation.core.errors import CertificateError, ConfigError, IssuerError, OverwriteRefused
from rotation.core.model import CertRequest, IssuedCert, KeyType, RenewalInfo

DEFAULT_VALIDITY = timedelta(days=90)
CLOCK_SKEW = timedelta(minutes=5)  # backdate notBefore so nodes with a slow clock accept the cert
MAX_CN_LENGTH = 64  # RFC 5280 upper bound; longer names live in the SANs only


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _key_type(value: KeyType | str) -> KeyType:
    try:
        return KeyType(value)
    except ValueError:
        allowed = ", ".join(kt.value for kt in KeyType)
        raise ConfigError(f"unknown key type {value!r}; expected one of {allowed}") from None


def _password(value: bytes | str | None) -> bytes | None:
    return value.encode("utf-8") if isinstance(value, str) else value


@dataclass(frozen=True)
class _LoadedCA:
    cert: x509.Certificate
    key: certs.SigningKey
    file_certs: tuple[x509.Certificate, ...]  # the CA cert, then whatever followed it in the file
    # what goes with every leaf: the file's certificates but its root, found once (a self-signature check
    # is a signature verification: ~1 ms for a P-384 CA, on every issue otherwise)
    intermediates: tuple[x509.Certificate, ...] = ()

    def __repr__(self) -> str:
        return f"_LoadedCA({certs.subject_text(self.cert)!r})"


class InternalCA:
    """Signs every request with a fresh key, using the CA in ``ca_cert``/``ca_key_file``.

    ``ca_cert`` may hold the signing CA alone or followed by its issuers up to the root; the
    non-root ones go into ``chain_pem`` and the last one is the trust anchor.
    """

    def __init__(
        self,
        name: str,
        ca_cert: Path | str,
        ca_key_file: Path | str,
        ca_key_password: bytes | str | None = None,
        validity: timedelta = DEFAULT_VALIDITY,
        key_type: KeyType | str = KeyType.ECDSA_P256,
        clock: Callable[[], datetime] = _utcnow,
        ocsp_url: str | None = None,
    ) -> None:
        self.name = name
        self.ca_cert = Path(ca_cert)
        self.ca_key_file = Path(ca_key_file)
        self._password = _password(ca_key_password)
        self.validity = validity
        self.key_type = _key_type(key_type)
        self._clock = clock
        self.ocsp_url = ocsp_url
        self._loaded: _LoadedCA | None = None

    def __repr__(self) -> str:  # the password and key stay out
        return f"InternalCA(name={self.name!r}, ca_cert={str(self.ca_cert)!r})"

    # --- Issuer protocol -------------------------------------------------------------------

    def check(self) -> None:
        self._ca(self._clock())

    def trust_anchors(self) -> list[str]:
        return [certs.cert_to_pem(self._ca(self._clock()).file_certs[-1])]

    public_roots = False

    def renewal_info(self, leaf_pem: str) -> RenewalInfo | None:
        return None  # no renewal window: renew_before decides

    def issue(self, request: CertRequest) -> IssuedCert:
        if not request.hosts and not request.subject:
            raise IssuerError(f"{request.cluster}/{request.cert_name}: the request names no hosts")
        now = self._clock()
        ca = self._ca(now)
        key_type = request.key_type or self.key_type
        key = certs.generate_private_key(key_type)
        not_after = min(now + (request.validity or self.validity), certs.not_after(ca.cert))
        leaf = _leaf_builder(request, key, ca.cert, now - CLOCK_SKEW, not_after, self.ocsp_url).sign(
            ca.key, certs.signing_hash_for(ca.key)
        )
        return IssuedCert(
            key_pem=certs.private_key_to_pem(key),
            leaf_pem=certs.cert_to_pem(leaf),
            chain_pem=certs.certs_to_pem(ca.intermediates),
        )

    # --- loading ---------------------------------------------------------------------------

    def _ca(self, now: datetime) -> _LoadedCA:
        if self._loaded is None:
            self._loaded = self._load()
        ca = self._loaded.cert
        if certs.not_after(ca) <= now:
            raise ConfigError(f"{self.ca_cert}: CA certificate expired at {certs.not_after(ca):%Y-%m-%d}")
        if certs.not_before(ca) > now:
            raise ConfigError(f"{self.ca_cert}: CA certificate is not valid before {certs.not_before(ca)}")
        return self._loaded

    def _load(self) -> _LoadedCA:
        cert_data = read_file(self.ca_cert, what="CA certificate")
        key_data = read_file(self.ca_key_file, what="CA key")
        try:
            file_certs = certs.load_certificates(cert_data, where=str(self.ca_cert))
            key = certs.load_private_key(key_data, where=str(self.ca_key_file), password=self._password)
        except CertificateError as exc:
            raise ConfigError(exc.message) from exc
        ca = file_certs[0]
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
                          | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
            raise ConfigError(f"{self.ca_key_file}: a {certs.describe_key(key)} key cannot sign certificates")
        if not certs.key_matches(key, ca):
            raise ConfigError(
                f"{self.ca_key_file}: CA key does not match the CA certificate in {self.ca_cert}"
            )
        if not certs.is_ca(ca):
            raise ConfigError(f"{self.ca_cert}: not a CA certificate (basicConstraints CA=true is missing)")
        problems = certs.chain_problems(file_certs)
        if problems:
            raise ConfigError(f"{self.ca_cert}: " + "; ".join(problems))
        return _LoadedCA(cert=ca, key=key, file_certs=tuple(file_certs),
                         intermediates=tuple(c for c in file_certs if not certs.is_self_signed(c)))


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _leaf_builder(
    request: CertRequest,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    not_before: datetime,
    not_after: datetime,
    ocsp_url: str | None = None,
) -> x509.CertificateBuilder:
    if request.subject is not None:  # RS certificate login compares the RFC 2253 subject byte for byte
        subject = x509.Name.from_rfc4514_string(request.subject)
    else:
        cn = request.common_name
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if 0 < len(cn) <= MAX_CN_LENGTH else [])
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if request.client else [ExtendedKeyUsageOID.SERVER_AUTH,
                                                                         ExtendedKeyUsageOID.CLIENT_AUTH]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if request.hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san(h) for h in request.hosts]), critical=False)
    if ocsp_url:  # where RS (proxy stapling) and clients ask whether the certificate is still good
        builder = builder.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url))]), critical=False)
    return (
        builder
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True, key_encipherment=is_rsa and not request.client),
                       critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_id(ca), critical=False)
    )


def _key_usage(*, digital_signature: bool = False, key_encipherment: bool = False,
               key_cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,  # RSA key exchange only; meaningless for ECDSA
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(ca: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


# --- creating a CA -------------------------------------------------------------------------


def init_ca(
    directory: Path,
    *,
    common_name: str = "rotation internal CA",
    validity: timedelta = timedelta(days=3650),
    key_type: KeyType = KeyType.ECDSA_P384,
    overwrite: bool = False,
    now: datetime | None = None,
) -> tuple[Path, Path]:
    """Write a self-signed root as ``ca.pem`` and its key as ``ca-key.pem`` (mode 0600)."""
    directory = Path(directory)
    cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
    if not overwrite:
        existing = [str(p) for p in (cert_path, key_path) if p.exists()]
        if existing:
            raise OverwriteRefused(f"{', '.join(existing)} already exist(s); refusing to overwrite a CA")
    directory.mkdir(parents=True, exist_ok=True)
    start = now or _utcnow()
    key = certs.generate_private_key(_key_type(key_type))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(start + validity)
        # path_length=1: room for one intermediate below the root, no deeper.
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, certs.signing_hash_for(key))
    )
    _write_file(key_path, certs.private_key_to_pem(key).reveal(), mode=0o600, overwrite=overwrite)
    _write_file(cert_path, certs.cert_to_pem(cert), mode=0o644, overwrite=overwrite)
    return cert_path, key_path


def _write_file(path: Path, text: str, *, mode: int, overwrite: bool) -> None:
    # O_EXCL closes the race between the exists() check and the write; O_NOFOLLOW refuses
    # to write a key through a planted symlink.
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    flags |= os.O_TRUNC if overwrite else os.O_EXCL
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise OverwriteRefused(f"{path} already exists; refusing to overwrite a CA") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write ({exc.strerror})") from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        os.fchmod(handle.fileno(), mode)  # an overwritten file keeps its old mode otherwise
        handle.write(text)


__all__ = ["DEFAULT_VALIDITY", "InternalCA", "init_ca"]
