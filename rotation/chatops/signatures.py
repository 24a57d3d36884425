"""Request authentication for the webhook: Slack v0 signatures, a generic HMAC, Mattermost tokens.

Every check runs on the raw body before anything parses it, compares in constant time
(``hmac.compare_digest``) and takes the current time as an argument (the clock is the caller's).
A failure raises ``SignatureError`` whose message is safe to log (never the secret or the body).

Headers are taken exactly as sent: the signature must be ``v0=`` (or ``sha256=``) followed by 64
lowercase hex digits and nothing else, the timestamp plain decimal digits without a leading zero,
and the HMAC is computed over the timestamp's own bytes. So exactly one header value passes for
a given (timestamp, body): a copy that differs by one byte (a trailing space, 0xA0, 0x85) fails
instead of slipping past the replay mark, which is keyed on (timestamp, body digest).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable

from rotation.core.errors import RotationError

TOLERANCE = 300  # seconds either side of now (Slack's own window)
_TIMESTAMP = re.compile(r"[1-9][0-9]{0,11}")
_SLACK_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_GENERIC_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")


class SignatureError(RotationError):
    """The request is not authentic, or not fresh."""


def _hex_hmac(secret: str | bytes, message: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _timestamp(raw: str | None, now: float, tolerance: int) -> int:
    if not raw:
        raise SignatureError("missing timestamp")
    if not _TIMESTAMP.fullmatch(raw):
        raise SignatureError("timestamp is not a Unix time")
    value = int(raw)
    if abs(now - value) > tolerance:
        raise SignatureError(f"timestamp is {int(now - value)}s away from now (limit {tolerance}s)")
    return value


def _same(expected: str, given: str) -> bool:
    """Constant time, on the exact bytes (``given`` as the server decoded the header: latin-1)."""
    return hmac.compare_digest(expected.encode("latin-1"), given.encode("latin-1", "replace"))


def slack_signature(secret: str | bytes, timestamp: str | int, body: bytes) -> str:
    """``v0=`` + HMAC-SHA256 over ``v0:{timestamp}:{body}`` (what Slack sends)."""
    return "v0=" + _hex_hmac(secret, b"v0:" + str(timestamp).encode() + b":" + body)


def verify_slack(secret: str | bytes, timestamp: str | None, signature: str | None, body: bytes, *, now: float,
                 tolerance: int = TOLERANCE) -> int:
    """Check ``X-Slack-Request-Timestamp`` / ``X-Slack-Signature``; returns the timestamp."""
    return _verify(slack_signature, _SLACK_SIGNATURE, secret, timestamp, signature, body, now, tolerance)


def generic_signature(secret: str | bytes, timestamp: str | int, body: bytes) -> str:
    """``sha256=`` + HMAC-SHA256 over ``{timestamp}.{body}`` (the ``X-Signature-256`` header)."""
    return "sha256=" + _hex_hmac(secret, str(timestamp).encode() + b"." + body)


def verify_generic(secret: str | bytes, timestamp: str | None, signature: str | None, body: bytes, *, now: float,
                   tolerance: int = TOLERANCE) -> int:
    """Check ``X-Timestamp`` / ``X-Signature-256``; returns the timestamp."""
    return _verify(generic_signature, _GENERIC_SIGNATURE, secret, timestamp, signature, body, now, tolerance)


def _verify(sign: Callable[[str | bytes, str, bytes], str], shape: re.Pattern[str], secret: str | bytes,
            timestamp: str | None, signature: str | None, body: bytes, now: float, tolerance: int) -> int:
    if not secret:
        raise SignatureError("no secret configured")
    if not signature:
        raise SignatureError("missing signature")
    value = _timestamp(timestamp, now, tolerance)
    if not shape.fullmatch(signature):
        raise SignatureError("signature is not in the expected form")
    assert timestamp is not None  # _timestamp refused it otherwise
    if not _same(sign(secret, timestamp, body), signature):
        raise SignatureError("signature does not match")
    return value


def verify_token(expected: str, authorization: str | None) -> None:
    """Mattermost: exactly ``Authorization: Token <token>``. No timestamp in this scheme, so no freshness."""
    if not expected:
        raise SignatureError("no token configured")
    if not authorization or not authorization.startswith("Token ") or len(authorization) <= len("Token "):
        raise SignatureError("missing token")
    if not _same("Token " + expected, authorization):
        raise SignatureError("token does not match")


__all__ = ["SignatureError", "TOLERANCE", "generic_signature", "slack_signature", "verify_generic", "verify_slack",
           "verify_token"]
