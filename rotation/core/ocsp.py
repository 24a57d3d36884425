"""OCSP stapling of the ``proxy`` certificate (RS 6.2.12+): what a certificate says, what RS answers.

Pure values and decisions; the REST calls are :class:`rotation.adapters.rs.client.RSClient`'s.
RS staples for ``proxy`` only, from the responder URL in that certificate's AIA extension; with
stapling on, a client blocks the handshake when the stapled status is REVOKED or UNKNOWN, so only
GOOD is good (sheet ``rs-8x-and-public-cas-2026.md`` §1.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

GOOD = "GOOD"
MAX_FIELD = 300  # what RS answers is outside text: shown bounded


def responder_urls(cert: x509.Certificate) -> tuple[str, ...]:
    """The OCSP URLs of the certificate's AIA extension (none: RS cannot staple it)."""
    try:
        access = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(str(d.access_location.value) for d in access
                 if d.access_method == AuthorityInformationAccessOID.OCSP
                 and isinstance(d.access_location, x509.UniformResourceIdentifier))


def _text(value: Any) -> str | None:
    return str(value)[:MAX_FIELD] if value is not None else None


@dataclass(frozen=True)
class OcspConfig:
    """``GET /v1/ocsp``: whether stapling is on, and the responder RS read from the proxy certificate."""

    stapling: bool
    responder_url: str | None = None

    @classmethod
    def from_api(cls, body: Any) -> OcspConfig:
        body = body if isinstance(body, dict) else {}
        return cls(stapling=body.get("ocsp_functionality") is True, responder_url=_text(body.get("responder_url")))


@dataclass(frozen=True)
class OcspStatus:
    """``GET /v1/ocsp/status`` or ``POST /v1/ocsp/test``: the responder's last answer about the proxy
    certificate (``cert_status`` None: no answer about the current certificate yet)."""

    cert_status: str | None = None
    responder_url: str | None = None
    produced_at: str | None = None
    next_update: str | None = None
    revocation_time: str | None = None

    @classmethod
    def from_api(cls, body: Any) -> OcspStatus:
        body = body if isinstance(body, dict) else {}
        return cls(**{name: _text(body.get(name)) for name in
                      ("cert_status", "responder_url", "produced_at", "next_update", "revocation_time")})

    @property
    def good(self) -> bool:
        return self.cert_status == GOOD

    def describe(self) -> str:
        if self.cert_status is None:
            return "no answer yet"
        revoked = f" (revoked at {self.revocation_time})" if self.revocation_time else ""
        return f"{self.cert_status}{revoked} from {self.responder_url or 'the responder'}"


def missing_url_problem(cluster: str, config: OcspConfig, leaf: x509.Certificate,
                        disable_when_missing: bool) -> str | None:
    """Why a ``proxy`` certificate cannot go in as things are (None: it can, maybe with stapling off)."""
    if not config.stapling or responder_urls(leaf) or disable_when_missing:
        return None
    return (f"OCSP stapling is on ({cluster}: GET /v1/ocsp) but the new proxy certificate has no OCSP URL in its "
            "AIA extension, so RS could not staple it; use an issuer that puts one (internal_ca: ocsp_url), "
            f"or let the rotation turn stapling off (clusters.{cluster}.ocsp: disable_when_missing)")


__all__ = ["GOOD", "OcspConfig", "OcspStatus", "missing_url_problem", "responder_urls"]
