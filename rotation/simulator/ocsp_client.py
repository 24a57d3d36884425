"""The OCSP query the simulator sends for ``POST /v1/ocsp/test`` (and its polls), on the wire.

A DER OCSPRequest is POSTed over plain HTTP to a **loopback** responder only; the answer is read
bounded (:data:`MAX_RESPONSE`, headers :data:`MAX_HEAD`) within the configured timeout, then
checked: a successful OCSP response, about the serial asked for, signed by the certificate's
issuer or by a responder certificate it issued with the OCSPSigning EKU. Failures are
:class:`OcspFailure` with RS's status and error code.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

if TYPE_CHECKING:
    import datetime as dt

MAX_RESPONSE = 64 * 1024
MAX_HEAD = 16 * 1024


class OcspFailure(Exception):
    def __init__(self, status: int, error_code: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error_code, self.description = status, error_code, description


@functools.lru_cache(maxsize=256)  # GET /v1/ocsp and /status ask it of the same proxy certificate each time
def responder_url_of(leaf: x509.Certificate) -> str | None:
    """The first OCSP URL of the certificate's AIA extension, if any."""
    try:
        access = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return None
    for description in access:
        if description.access_method == AuthorityInformationAccessOID.OCSP:
            value = description.access_location.value
            return value if isinstance(value, str) else None
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def post(url: str, body: bytes, timeout: float) -> bytes:
    """POST a DER OCSP request; the answer's body, read bounded, within ``timeout`` seconds."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http" or not host:
        raise OcspFailure(500, "ocsp_query_failed", f"Unsupported OCSP responder URL {url!r} (http:// only)")
    if not _loopback(host):
        raise OcspFailure(500, "ocsp_query_failed", f"The simulator queries loopback responders only, not {host}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        return await asyncio.wait_for(_exchange(host, parts.port or 80, path, body), timeout)
    except TimeoutError as exc:
        raise OcspFailure(500, "ocsp_query_failed", f"No answer from {url} within {timeout:g} s") from exc
    except OSError as exc:
        raise OcspFailure(500, "ocsp_query_failed", f"Cannot reach {url}: {exc.strerror or exc}") from exc


async def _exchange(host: str, port: int, path: str, body: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port, limit=MAX_HEAD)
    try:
        writer.write((f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/ocsp-request\r\n"
                      f"Accept: application/ocsp-response\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                      ).encode("latin-1") + body)
        await writer.drain()
        try:
            status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            code = int(status_line.split(" ", 2)[1])
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, IndexError, ValueError) as exc:
            raise OcspFailure(500, "invalid_ocsp_response", "The responder's answer is not HTTP") from exc
        if code != 200:
            raise OcspFailure(500, "ocsp_query_failed", f"The responder answered HTTP {code}")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
        length = headers.get("content-length")
        if "chunked" in headers.get("transfer-encoding", "").lower() or (length is not None and not length.isdigit()):
            raise OcspFailure(500, "invalid_ocsp_response", "The responder's answer has no usable length")
        if length is not None and int(length) > MAX_RESPONSE:
            raise OcspFailure(500, "invalid_ocsp_response", f"The responder's answer exceeds {MAX_RESPONSE} bytes")
        data = b""
        while len(data) <= MAX_RESPONSE and (length is None or len(data) < int(length)):
            chunk = await reader.read(MAX_RESPONSE + 1 - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) > MAX_RESPONSE:
            raise OcspFailure(500, "invalid_ocsp_response", f"The responder's answer exceeds {MAX_RESPONSE} bytes")
        return data
    finally:
        writer.close()


def _http_date(moment: dt.datetime | None) -> str | None:
    return email.utils.format_datetime(moment, usegmt=True) if moment is not None else None


def parse_response(der: bytes, leaf: x509.Certificate, issuer: x509.Certificate) -> dict[str, str | None]:
    """The status object's fields from a DER OCSPResponse, after checking it answers for ``leaf``."""
    try:
        response = ocsp.load_der_ocsp_response(der)
    except ValueError as exc:
        raise OcspFailure(500, "invalid_ocsp_response", "The responder's answer is not an OCSP response") from exc
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise OcspFailure(500, "invalid_ocsp_response", f"The responder answered {response.response_status.name}")
    if response.serial_number != leaf.serial_number:
        raise OcspFailure(500, "invalid_ocsp_response", "The responder answered about another certificate")
    _verify_signer(response, issuer)
    revoked = response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    return {"cert_status": response.certificate_status.name,
            "produced_at": _http_date(response.produced_at_utc),
            "this_update": _http_date(response.this_update_utc),
            "next_update": _http_date(response.next_update_utc),
            "revocation_time": _http_date(response.revocation_time_utc) if revoked else None}


def _responder_is(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if response.responder_key_hash is not None:
        return response.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(
            cert.public_key()).digest  # type: ignore[arg-type]
    return response.responder_name == cert.subject


def _verify_signer(response: ocsp.OCSPResponse, issuer: x509.Certificate) -> None:
    """Signed by the issuer itself, or by a responder certificate it issued for OCSP signing."""
    signer = issuer if _responder_is(response, issuer) else None
    for cert in response.certificates if signer is None else ():
        try:
            cert.verify_directly_issued_by(issuer)
            usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
            continue
        if _responder_is(response, cert) and ExtendedKeyUsageOID.OCSP_SIGNING in usages:
            signer = cert
    if signer is None:
        raise OcspFailure(500, "invalid_ocsp_response",
                          "The answer is signed by neither the certificate's issuer nor a responder it delegated to")
    key, data, signature = signer.public_key(), response.tbs_response_bytes, response.signature
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), response.signature_hash_algorithm)  # type: ignore[arg-type]
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(response.signature_hash_algorithm))  # type: ignore[arg-type]
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
        else:
            raise InvalidSignature
    except (InvalidSignature, TypeError, ValueError) as exc:
        raise OcspFailure(500, "invalid_ocsp_response", "The OCSP answer's signature does not verify") from exc
