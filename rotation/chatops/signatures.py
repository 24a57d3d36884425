"""Request authentication for the webhook: Slack v0 signatures, a generic HMAC, Mattermost tokens.

Every check runs on the raw body before anything parses it, compares in constant time
(``hmac.compare_digest``) and takes the current time as an argument (the clock is the caller's).
A failure raises ``SignatureError`` whose message is safe to log (never the secret or the body).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from rotation.errors import RotationError

TOLERANCE = 300  # seconds either side of now (Slack's own window)


class SignatureError(RotationError):
    """The request is not authentic, or not fresh."""


def _hex_hmac(secret: str | bytes, message: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _timestamp(raw: str | None, now: float, tolerance: int) -> int:
    if not raw:
        raise SignatureError("missing timestamp")
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise SignatureError("timestamp is not a Unix time")
    value = int(raw)
    if abs(now - value) > tolerance:
        raise SignatureError(f"timestamp is {int(now - value)}s away from now (limit {tolerance}s)")
    return value


def _same(expected: str, given: str | None) -> bool:
    if not given:
        return False
    return hmac.compare_digest(expected.encode(), given.strip().encode("utf-8", "replace"))


def slack_signature(secret: str | bytes, timestamp: str | int, body: bytes) -> str:
    """``v0=`` + HMAC-SHA256 over ``v0:{timestamp}:{body}`` (what Slack sends)."""
    return "v0=" + _hex_hmac(secret, b"v0:" + str(timestamp).encode() + b":" + body)


def verify_slack(secret: str | bytes, timestamp: str | None, signature: str | None, body: bytes, *, now: float,
                 tolerance: int = TOLERANCE) -> int:
    """Check ``X-Slack-Request-Timestamp`` / ``X-Slack-Signature``; returns the timestamp."""
    return _verify(slack_signature, secret, timestamp, signature, body, now, tolerance)


def generic_signature(secret: str | bytes, timestamp: str | int, body: bytes) -> str:
    """``sha256=`` + HMAC-SHA256 over ``{timestamp}.{body}`` (the ``X-Signature-256`` header)."""
    return "sha256=" + _hex_hmac(secret, str(timestamp).encode() + b"." + body)


def verify_generic(secret: str | bytes, timestamp: str | None, signature: str | None, body: bytes, *, now: float,
                   tolerance: int = TOLERANCE) -> int:
    """Check ``X-Timestamp`` / ``X-Signature-256``; returns the timestamp."""
    return _verify(generic_signature, secret, timestamp, signature, body, now, tolerance)


def _verify(sign: Callable[[str | bytes, int, bytes], str], secret: str | bytes, timestamp: str | None,
            signature: str | None, body: bytes, now: float, tolerance: int) -> int:
    if not signature:
        raise SignatureError("missing signature")
    value = _timestamp(timestamp, now, tolerance)
    if not _same(sign(secret, value, body), signature):
        raise SignatureError("signature does not match")
    return value


def verify_token(expected: str, authorization: str | None) -> None:
    """Mattermost: ``Authorization: Token <token>``. No timestamp in this scheme, so no freshness."""
    if not expected:
        raise SignatureError("no token configured")
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "token" or not token:
        raise SignatureError("missing token")
    if not _same(expected, token):
        raise SignatureError("token does not match")


__all__ = ["SignatureError", "TOLERANCE", "generic_signature", "slack_signature", "verify_generic", "verify_slack",
           "verify_token"]
