"""The tool's own client certificate (RS certificate login): the subject rules RS applies, and the
pre-push checks of a client certificate (pure).

RS maps a client certificate to a user whose ``certificate_subject_line`` equals the certificate's
subject *exactly*, written as RFC 2253 (reverse order, so CN first), no space after the commas,
at most one OU (reference ``rs-8x-and-public-cas-2026.md`` §1.3). ``cryptography``'s
``Name.rfc4514_string()`` writes that form, so a subject line that does not round-trip through it
can never match a certificate, and is refused where it is configured.
"""

from __future__ import annotations

from cryptography import x509

from rotation.core import certs
from rotation.core.model import CertRequest
from rotation.core.validate import (
    Check,
    CheckContext,
    ParsedBundle,
    check_chain_cas,
    check_chain_complete,
    check_chain_order,
    check_critical_extensions,
    check_key_matches_leaf,
    check_key_type,
    check_key_usage,
    check_not_a_ca,
    check_serial_numbers,
    check_signature_hashes,
    check_validity_window,
)


def _split(text: str) -> list[str]:
    """RDNs at unescaped commas."""
    parts, current, escaped = [], "", False
    for char in text:
        if escaped or char != ",":
            current += char
            escaped = not escaped and char == "\\"
        else:
            parts.append(current)
            current = ""
    return [*parts, current]


def subject_line_problem(text: str) -> str | None:
    """Why ``text`` cannot be a ``certificate_subject_line`` RS matches, or None."""
    if not text:
        return "must not be empty"
    parts = _split(text)
    if any(part != part.lstrip() for part in parts):
        return "no space may follow a comma (RS compares the subject byte for byte)"
    if not parts[0].startswith("CN="):
        return "must start with CN= (RFC 2253 order: the reverse of the certificate's)"
    if sum(part.startswith("OU=") for part in parts) > 1:
        return "RS allows at most one OU"
    try:
        written = x509.Name.from_rfc4514_string(text).rfc4514_string()
    except ValueError as exc:
        return f"not an RFC 2253 name ({exc})"
    if written != text:
        return f"a certificate with this subject is written {written!r}: use that spelling"
    return None


def subject_of(cert: x509.Certificate) -> str:
    """The subject as RS compares it with ``certificate_subject_line``."""
    return cert.subject.rfc4514_string()


def check_subject_line(bundle: ParsedBundle, request: CertRequest, ctx: CheckContext) -> list[str]:
    if request.subject is None or subject_of(bundle.leaf) == request.subject:
        return []
    return [f"subject {subject_of(bundle.leaf)!r} is not the certificate_subject_line {request.subject!r} "
            "byte for byte: RS would map it to no user"]


def check_client_usage(bundle: ParsedBundle, request: CertRequest, ctx: CheckContext) -> list[str]:
    usages = certs.extended_key_usages(bundle.leaf)
    if not usages or "clientAuth" in usages:
        return []
    return [f"leaf certificate extendedKeyUsage lacks clientAuth ({', '.join(sorted(usages))}): it cannot log in"]


#: What a client certificate must pass before the tool switches to it (no SANs, no serverAuth needed).
CLIENT_CHECKS: tuple[Check, ...] = (
    check_key_matches_leaf,
    check_chain_order,
    check_chain_cas,
    check_chain_complete,
    check_validity_window,
    check_client_usage,
    check_subject_line,
    check_key_usage,
    check_not_a_ca,
    check_key_type,
    check_signature_hashes,
    check_serial_numbers,
    check_critical_extensions,
)


__all__ = ["CLIENT_CHECKS", "check_client_usage", "check_subject_line", "subject_line_problem", "subject_of"]
