"""Pure crypto helpers over ``cryptography``: parse, fingerprint, match keys, check chains.

No file, network or clock access: callers pass PEM text and a ``where`` label (a file name,
"issued certificate", ...) that error messages start with. Private keys travel as
:class:`rotation.core.model.SecretPEM` and never appear in messages.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rotation.core.errors import CertificateError, ConfigError
from rotation.core.model import KeyType, SecretPEM

PrivateKey = PrivateKeyTypes
PublicKey = CertificatePublicKeyTypes
SigningKey = CertificateIssuerPrivateKeyTypes

# A PEM block: label, optional RFC 1421 headers, base64 body. Matching BEGIN/END labels.
_PEM_BLOCK = re.compile(
    rb"-----BEGIN (?P<label>[A-Z0-9 ]+)-----\r?\n(?P<body>.*?)-----END (?P=label)-----", re.DOTALL
)
_BASE64_LINE = re.compile(rb"^[A-Za-z0-9+/=]*$")
_BINARY = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f-\xff]")  # bytes no text file holds: DER, PKCS#12

_EKU_NAMES: dict[x509.ObjectIdentifier, str] = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}

_CURVES: dict[str, tuple[str, KeyType | None]] = {
    "secp256r1": ("P-256", KeyType.ECDSA_P256),
    "secp384r1": ("P-384", KeyType.ECDSA_P384),
    "secp521r1": ("P-521", None),
}

_RSA_SIZES: dict[int, KeyType] = {2048: KeyType.RSA_2048, 3072: KeyType.RSA_3072, 4096: KeyType.RSA_4096}


# --- PEM parsing ---------------------------------------------------------------------------


def _as_bytes(pem: str | bytes) -> bytes:
    if isinstance(pem, SecretPEM):
        return pem.reveal().encode("ascii", errors="replace")
    if isinstance(pem, str):
        return pem.encode("ascii", errors="replace")
    return pem


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _pem_blocks(data: bytes, *, where: str, strict: bool = True) -> list[tuple[str, bytes]]:
    """Split PEM text into (label, block bytes), refusing bodies that are not base64.

    ``strict`` also refuses text between blocks: RS refuses uploads with stray text such as
    PKCS#12 "Bag Attributes".
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise CertificateError(f"{where}: UTF-16 text; save it as plain ASCII PEM")
    if strict and data.startswith(b"\xef\xbb\xbf"):
        raise CertificateError(f"{where}: starts with a UTF-8 byte-order mark; save it without one (plain ASCII PEM)")
    if b"-----BEGIN" not in data and _BINARY.search(data):
        raise CertificateError(f"{where}: binary data, not PEM text (a DER or PKCS#12 file?); convert it to PEM first")
    blocks: list[tuple[str, bytes]] = []
    pos = 0
    for match in _PEM_BLOCK.finditer(data):
        if strict:
            _refuse_stray_text(data, pos, match.start(), where=where)
        label = match.group("label").decode("ascii")
        _refuse_bad_body(match.group("body"), label, len(blocks) + 1, where=where)
        blocks.append((label, match.group(0) + b"\n"))
        pos = match.end()
    if strict:
        _refuse_stray_text(data, pos, len(data), where=where)
    return blocks


def _refuse_stray_text(data: bytes, start: int, end: int, *, where: str) -> None:
    stray = data[start:end]
    if not stray.strip():
        return
    line = _line_of(data, start + (len(stray) - len(stray.lstrip())))
    if b"-----BEGIN" in stray or b"-----END" in stray:
        raise CertificateError(f"{where}: unterminated or mismatched PEM block near line {line}")
    # The stray text itself is not echoed: it could be part of a key.
    raise CertificateError(
        f"{where}: unexpected text outside PEM blocks at line {line} "
        "(strip PKCS#12 'Bag Attributes' and other comments; RS refuses them)"
    )


def _refuse_bad_body(body: bytes, label: str, index: int, *, where: str) -> None:
    lines = [line.strip() for line in body.splitlines()]
    if any(b":" in line for line in lines):  # RFC 1421 headers, e.g. Proc-Type of legacy encrypted keys
        lines = lines[lines.index(b"") + 1 :] if b"" in lines else []
    if not any(lines) or not all(_BASE64_LINE.match(line) for line in lines):
        raise CertificateError(f"{where}: PEM block #{index} ({label}) has a body that is not base64")


def _is_key_label(label: str) -> bool:
    return label.endswith("PRIVATE KEY")


def load_certificates(pem: str | bytes, *, where: str) -> list[x509.Certificate]:
    """Every certificate in ``pem``, in file order. Refuses keys, other blocks and stray text."""
    data = _as_bytes(pem)
    blocks = _pem_blocks(data, where=where)
    if not blocks:
        raise CertificateError(f"{where}: no PEM certificate found")
    certs: list[x509.Certificate] = []
    for index, (label, block) in enumerate(blocks, start=1):
        if _is_key_label(label):
            raise CertificateError(
                f"{where}: contains a private key block (#{index}); expected certificates only"
            )
        if label != "CERTIFICATE":
            raise CertificateError(f"{where}: PEM block #{index} is {label!r}, expected 'CERTIFICATE'")
        try:
            cert = x509.load_pem_x509_certificate(block)
        except ValueError as exc:
            raise CertificateError(f"certificate #{index} in {where}: not a valid X.509 certificate") from exc
        try:  # read now: cryptography parses extensions on first use, where its errors are no ValueError
            cert.extensions  # noqa: B018
        except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
            raise CertificateError(f"certificate #{index} in {where}: its extensions cannot be read ({exc})") from None
        try:  # likewise the key: every check compares or describes it, and RS takes only RSA and ECDSA
            cert.public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise CertificateError(f"certificate #{index} in {where}: its key is of a type that cannot be read "
                                   f"({exc}); RS takes RSA or ECDSA P-256/P-384 keys") from None
        certs.append(cert)
    return certs


def key_is_encrypted(pem: str | bytes) -> bool:
    """True for PKCS#8 ``ENCRYPTED PRIVATE KEY`` and legacy ``Proc-Type: 4,ENCRYPTED`` keys."""
    data = _as_bytes(pem)
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data or b"Proc-Type: 4,ENCRYPTED" in data


def load_private_key(pem: str | bytes, *, where: str, password: bytes | None = None) -> PrivateKey:
    """The one private key in ``pem`` (certificate blocks beside it are tolerated).

    Raises CertificateError when there is no parsable key, and ConfigError for password
    trouble (encrypted without a password, wrong password, password for a plain key): those
    are fixed in configuration, not in the file.
    """
    data = _as_bytes(pem)
    # Lenient about text between blocks: the key is re-serialised before it is sent anywhere.
    blocks = _pem_blocks(data, where=where, strict=False)
    key_blocks = [block for label, block in blocks if _is_key_label(label)]
    if not key_blocks:
        raise CertificateError(f"{where}: not a PEM private key")
    if len(key_blocks) > 1:
        raise CertificateError(f"{where}: contains {len(key_blocks)} private keys, expected one")
    block = key_blocks[0]
    encrypted = key_is_encrypted(block)
    if encrypted and password is None:
        raise ConfigError(f"{where}: key is encrypted and no password was given")
    if not encrypted and password is not None:
        raise ConfigError(f"{where}: a password was given but the key is not encrypted")
    try:
        return serialization.load_pem_private_key(block, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        if encrypted:
            raise ConfigError(f"{where}: wrong password or key is encrypted") from None
        raise CertificateError(f"{where}: not a valid private key (unsupported or corrupt)") from exc


def split_leaf_and_chain(pem: str, *, where: str) -> tuple[str, str]:
    """(leaf PEM, remaining certificates PEM), re-serialised so stray whitespace is gone."""
    certs = load_certificates(pem, where=where)
    return cert_to_pem(certs[0]), certs_to_pem(certs[1:])


# --- serialisation and fingerprints --------------------------------------------------------


def cert_to_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def certs_to_pem(certs: Iterable[x509.Certificate]) -> str:
    return "".join(cert_to_pem(cert) for cert in certs)


def private_key_to_pem(key: PrivateKey) -> SecretPEM:
    """PKCS#8, unencrypted: RS refuses password-protected keys."""
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SecretPEM(data.decode("ascii"))


def der_fingerprint(der: bytes) -> str:
    """SHA-256 of DER bytes, lower-case hex without colons (the form probes report)."""
    return hashlib.sha256(der).hexdigest()


def fingerprint(cert: x509.Certificate) -> str:
    return der_fingerprint(cert.public_bytes(serialization.Encoding.DER))


def short_fingerprint(fp: str) -> str:
    """First 16 hex characters: enough to tell certificates apart in a table."""
    return fp.replace(":", "").lower()[:16]


# --- keys ----------------------------------------------------------------------------------


def generate_private_key(key_type: KeyType) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if key_type is KeyType.ECDSA_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if key_type is KeyType.ECDSA_P384:
        return ec.generate_private_key(ec.SECP384R1())
    size = next(bits for bits, kt in _RSA_SIZES.items() if kt is key_type)
    return rsa.generate_private_key(public_exponent=65537, key_size=size)


def _public(key: PrivateKey | PublicKey) -> object:
    return key.public_key() if hasattr(key, "private_bytes") else key  # type: ignore[union-attr]


def key_type_of(key: PrivateKey | PublicKey) -> KeyType | None:
    """The KeyType of a key, or None when it is not one rotation can issue."""
    public = _public(key)
    if isinstance(public, rsa.RSAPublicKey):
        return _RSA_SIZES.get(public.key_size)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return _CURVES.get(public.curve.name, ("", None))[1]
    return None


def describe_key(key: PrivateKey | PublicKey) -> str:
    """Human form for messages: "RSA 2048", "ECDSA P-256", "Ed25519"."""
    public = _public(key)
    if isinstance(public, rsa.RSAPublicKey):
        return f"RSA {public.key_size}"
    if isinstance(public, dsa.DSAPublicKey):
        return f"DSA {public.key_size}"
    if isinstance(public, ec.EllipticCurvePublicKey):
        return f"ECDSA {_CURVES.get(public.curve.name, (public.curve.name, None))[0]}"
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(public, ed448.Ed448PublicKey):
        return "Ed448"
    return type(public).__name__


def _spki(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_matches(private_key: PrivateKey, cert: x509.Certificate) -> bool:
    """Whether ``private_key`` is the key of ``cert`` (compares SubjectPublicKeyInfo bytes)."""
    return _spki(private_key.public_key()) == _spki(cert.public_key())


def signing_hash_for(key: SigningKey) -> hashes.SHA256 | hashes.SHA384 | None:
    """SHA-384 for P-384/P-521 keys, none for EdDSA (it hashes internally), SHA-256 otherwise."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


# --- certificate fields --------------------------------------------------------------------


def subject_alt_names(cert: x509.Certificate) -> tuple[str, ...]:
    """DNS names then IP addresses (as strings); () when the extension is absent."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return tuple(dns) + tuple(ips)


def ip_sans(cert: x509.Certificate) -> tuple[str, ...]:
    """The iPAddress SANs only (as strings): what an IP address host is matched against."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))


def common_name(cert: x509.Certificate) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[0].value
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def subject_text(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def not_after(cert: x509.Certificate) -> datetime:
    return cert.not_valid_after_utc


def not_before(cert: x509.Certificate) -> datetime:
    return cert.not_valid_before_utc


def extended_key_usages(cert: x509.Certificate) -> set[str]:
    """Names such as "serverAuth"; unknown OIDs as dotted strings; empty when absent."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return set()
    return {_EKU_NAMES.get(oid, oid.dotted_string) for oid in eku}


def signature_hash_name(cert: x509.Certificate) -> str | None:
    """"sha256", "sha1", ...; None for EdDSA or algorithms cryptography does not know."""
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    return algorithm.name if algorithm is not None else None


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and issued_by(cert, cert)


# --- host coverage and chains --------------------------------------------------------------


def _normalise_host(name: str) -> str:
    name = name.strip().rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(name))  # "::0:1" and "::1" are the same host
    except ValueError:
        return name


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_covered(host: str, names: Iterable[str]) -> bool:
    """Exact match (case-insensitive), or ``*.example.com`` covering exactly one more label."""
    wanted = _normalise_host(host)
    for name in names:
        candidate = _normalise_host(name)
        if candidate == wanted:
            return True
        # clients take no wildcard with fewer than two labels after it ("*.lab" covers nothing)
        if candidate.startswith("*.") and "." in candidate[2:] and not is_ip(wanted):
            label, _, rest = wanted.partition(".")
            if label and rest and rest == candidate[2:]:
                return True
    return False


def _describe(cert: x509.Certificate) -> str:
    return subject_text(cert) or "empty subject"


def _issue_failure(cert: x509.Certificate, issuer_cert: x509.Certificate) -> str | None:
    """Why ``issuer_cert`` did not issue ``cert``, or None when it did."""
    if cert.issuer != issuer_cert.subject:
        return "issuer name does not match"
    try:
        cert.verify_directly_issued_by(issuer_cert)
    except InvalidSignature:
        return "signature does not verify with its key"
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # cryptography refuses to verify e.g. SHA-1 signatures or odd key types.
        algorithm = signature_hash_name(cert) or "unknown"
        try:
            issuer_key = describe_key(issuer_cert.public_key())
        except (ValueError, UnsupportedAlgorithm):  # a key type no library here reads (a handshake's chain)
            issuer_key = f"unreadable {issuer_cert.public_key_algorithm_oid.dotted_string}"
        return f"signature cannot be verified ({algorithm} signature, {issuer_key} key)"
    return None


def issued_by(cert: x509.Certificate, issuer_cert: x509.Certificate) -> bool:
    """Names chain and ``issuer_cert``'s key verifies ``cert``'s signature."""
    return _issue_failure(cert, issuer_cert) is None


def chain_problems(certs: Sequence[x509.Certificate]) -> list[str]:
    """One sentence per consecutive pair where certificate #i+1 did not issue certificate #i."""
    problems: list[str] = []
    for index in range(len(certs) - 1):
        child, parent = certs[index], certs[index + 1]
        reason = _issue_failure(child, parent)
        if reason is not None:
            problems.append(
                f"chain out of order: certificate #{index + 2} ({_describe(parent)}) did not issue "
                f"certificate #{index + 1} ({_describe(child)}): {reason}"
            )
    return problems


__all__ = [
    "PrivateKey",
    "PublicKey",
    "SigningKey",
    "cert_to_pem",
    "certs_to_pem",
    "chain_problems",
    "common_name",
    "der_fingerprint",
    "describe_key",
    "extended_key_usages",
    "fingerprint",
    "generate_private_key",
    "host_covered",
    "ip_sans",
    "is_ca",
    "is_ip",
    "is_self_signed",
    "issued_by",
    "key_is_encrypted",
    "key_matches",
    "key_type_of",
    "load_certificates",
    "load_private_key",
    "not_after",
    "not_before",
    "private_key_to_pem",
    "short_fingerprint",
    "signature_hash_name",
    "signing_hash_for",
    "split_leaf_and_chain",
    "subject_alt_names",
    "subject_text",
]
