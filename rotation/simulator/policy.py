"""``PUT /v1/cluster`` of the simulator: which fields may be written, with which values, per
version profile (reference §4.1 and the "TLS policy enforcement" part of the simulator spec).

* before 7.4.2: ``min_control_TLS_version`` takes ``1``, ``1.1``, ``1.2``, ``1.3``;
  ``min_data_TLS_version`` / ``min_sentinel_TLS_version`` take ``1``, ``1.1``, ``1.2``; the
  Sentinel mode is written as ``sentinel_ssl_policy`` (``sentinel_tls_mode`` does not exist);
* from 7.4.2: every minimum takes ``1.2`` or ``1.3``; only ``sentinel_tls_mode`` may be written
  (writing the legacy name is refused), and GET shows both names.

Cipher lists are checked with the local OpenSSL, as RS does with its own. Error codes (400):
``invalid_tls_version``, ``invalid_field`` (unknown or not writable on this profile),
``read_only_field``, ``invalid_cipher_list``, ``invalid_value``.
"""

from __future__ import annotations

import ssl
from typing import Any

from .versions import version_tuple

RENAMED_SINCE = (7, 4, 2)
MODES = ("allowed", "disabled", "required")
TLS13_SUITES = frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
                          "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"})
READ_ONLY = frozenset({"name", "software_version", "control_cipher_suites_tls_1_3", "sentinel_cipher_suites_tls_1_3",
                       "proxy_certificate", "syncer_certificate"})
BOOLEANS = frozenset({"handle_redirects", "http_support", "mtls_certificate_authentication"})
MIN_FIELDS = ("min_control_TLS_version", "min_data_TLS_version", "min_sentinel_TLS_version")


class PolicyRejected(Exception):
    def __init__(self, error_code: str, description: str) -> None:
        super().__init__(description)
        self.error_code, self.description = error_code, description


def is_legacy(version: str) -> bool:
    return version_tuple(version)[:3] < RENAMED_SINCE


def allowed_versions(field: str, version: str) -> tuple[str, ...]:
    if not is_legacy(version):
        return ("1.2", "1.3")
    return ("1", "1.1", "1.2", "1.3") if field == "min_control_TLS_version" else ("1", "1.1", "1.2")


def _check_ciphers(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PolicyRejected("invalid_cipher_list", f"{field} must be a non-empty OpenSSL cipher string")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(value)
    except ssl.SSLError as exc:
        raise PolicyRejected("invalid_cipher_list", f"{field}: no cipher can be selected from {value!r}") from exc
    return value


def _check_tls13(value: Any) -> str:
    text = ":".join(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else value
    if not isinstance(text, str):
        raise PolicyRejected("invalid_cipher_list", "data_cipher_suites_tls_1_3 must be a string")
    unknown = [s for s in text.split(":") if s and s not in TLS13_SUITES]
    if unknown:
        raise PolicyRejected("invalid_cipher_list", f"data_cipher_suites_tls_1_3: unknown suites {unknown}")
    return text


def validate_update(body: Any, version: str) -> dict[str, Any]:
    """The settings changes ``body`` asks for, or :class:`PolicyRejected` (all-or-nothing)."""
    if not isinstance(body, dict) or not body:
        raise PolicyRejected("invalid_value", "Body must be a non-empty JSON object")
    legacy = is_legacy(version)
    changes: dict[str, Any] = {}
    for field, value in body.items():
        if field in READ_ONLY:
            raise PolicyRejected("read_only_field", f"{field} is read-only")
        if field in MIN_FIELDS:
            allowed = allowed_versions(field, version)
            if not isinstance(value, str) or value not in allowed:
                raise PolicyRejected("invalid_tls_version",
                                     f"{field}: {value!r} is not one of {', '.join(allowed)} on RS {version}")
            changes[field] = value
        elif field in ("sentinel_tls_mode", "sentinel_ssl_policy"):
            writable = "sentinel_ssl_policy" if legacy else "sentinel_tls_mode"
            if field != writable:
                raise PolicyRejected("invalid_field", f"{field} cannot be written on RS {version}; use {writable}")
            if value not in MODES:
                raise PolicyRejected("invalid_value", f"{field}: {value!r} is not one of {', '.join(MODES)}")
            changes["sentinel_tls_mode"] = changes["sentinel_ssl_policy"] = value
        elif field in ("control_cipher_suites", "data_cipher_list"):
            changes[field] = _check_ciphers(field, value)
        elif field == "data_cipher_suites_tls_1_3":
            changes[field] = _check_tls13(value)
        elif field == "sentinel_cipher_suites":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise PolicyRejected("invalid_value", "sentinel_cipher_suites must be a list of strings")
            changes[field] = value
        elif field in BOOLEANS:
            if not isinstance(value, bool):
                raise PolicyRejected("invalid_value", f"{field} must be a boolean")
            changes[field] = value
        elif field == "alert_settings":
            if not isinstance(value, dict):
                raise PolicyRejected("invalid_value", "alert_settings must be an object")
            changes[field] = value
        else:
            raise PolicyRejected("invalid_field", f"{field} is not a writable cluster field of this simulator")
    return changes


def merge(settings: dict[str, object], changes: dict[str, Any]) -> dict[str, object]:
    """``settings`` with ``changes`` applied (``alert_settings`` is merged one level deep)."""
    merged = dict(settings)
    for field, value in changes.items():
        if field == "alert_settings":
            alerts = dict(merged.get("alert_settings") or {})  # type: ignore[call-overload]
            alerts.update(value)
            merged[field] = alerts
        else:
            merged[field] = value
    return merged
