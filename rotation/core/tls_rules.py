"""TLS protocol and cipher policy of a cluster: pure rules, no network, file or clock access.

Three views of one cluster are compared here:

* the **policy** wanted in the inventory (``clusters.<name>.tls_policy``);
* the **settings** ``GET /v1/cluster`` reports (``min_control_TLS_version`` and friends);
* the **handshakes** ``rotation.adapters.tls.audit`` made (which versions and TLS 1.2 suites each
  endpoint really accepts); ``rotation.core.tls_drift`` compares the three.

What the fields accept depends on the RS version (reference §4.1): before 7.4.2 the minimums
take ``1``, ``1.1``, ``1.2`` (control also ``1.3``) and the Sentinel mode is written as
``sentinel_ssl_policy``; from 7.4.2 only ``1.2``/``1.3`` and ``sentinel_tls_mode``. A cluster
whose version is unknown is treated as current (the stricter rules).

Cipher strings are expanded with the local OpenSSL (``SSLContext.set_ciphers`` +
``get_ciphers``): that is computation, not I/O. ``control_cipher_suites`` is BoringSSL syntax on
RS; a string OpenSSL cannot read is reported as "cannot check" rather than refused.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from rotation.core.versions import parse_version

SENTINEL_RENAMED_SINCE = (7, 4, 2)  # sentinel_ssl_policy -> sentinel_tls_mode; TLS 1.0/1.1 removed
AUDITED_VERSIONS = ("1.0", "1.1", "1.2", "1.3")
SENTINEL_MODES = ("allowed", "disabled", "required")
TLS13_SUITES = frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
                          "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"})
CONTROL_CERTS = frozenset({"api", "cm", "metrics_exporter"})
DATA_CERTS = frozenset({"proxy"})
RESTART_HINT = "run `supervisorctl restart sentinel_service` on every node (the REST API cannot restart it)"


def rank(version: str | None) -> int | None:
    """``"1"``/``"1.0"`` -> 0 ... ``"1.3"`` -> 3; anything else -> None."""
    return {"1": 0, "1.0": 0, "1.1": 1, "1.2": 2, "1.3": 3}.get(str(version).strip()) if version else None


def label(version: str | None) -> str:
    """RS writes TLS 1.0 as ``"1"``; people read ``1.0``."""
    position = rank(version)
    return AUDITED_VERSIONS[position] if position is not None else str(version)


# --- the policy and the per-version field rules --------------------------------------------


@dataclass(frozen=True)
class PolicyField:
    name: str  # inventory spelling
    wire: str  # RS field name (current spelling)
    plane: str  # control | data | sentinel
    kind: str  # version | mode | ciphers | tls13


POLICY_FIELDS: tuple[PolicyField, ...] = (
    PolicyField("min_control_tls", "min_control_TLS_version", "control", "version"),
    PolicyField("min_data_tls", "min_data_TLS_version", "data", "version"),
    PolicyField("min_sentinel_tls", "min_sentinel_TLS_version", "sentinel", "version"),
    PolicyField("sentinel_tls_mode", "sentinel_tls_mode", "sentinel", "mode"),
    PolicyField("control_cipher_suites", "control_cipher_suites", "control", "ciphers"),
    PolicyField("data_cipher_list", "data_cipher_list", "data", "ciphers"),
    PolicyField("data_cipher_suites_tls_1_3", "data_cipher_suites_tls_1_3", "data", "tls13"),
)
_BY_NAME = {f.name: f for f in POLICY_FIELDS}
MIN_FIELD = {"control": _BY_NAME["min_control_tls"], "data": _BY_NAME["min_data_tls"],
             "sentinel": _BY_NAME["min_sentinel_tls"]}
CIPHER_FIELD = {"control": _BY_NAME["control_cipher_suites"], "data": _BY_NAME["data_cipher_list"]}


def field_named(name: str) -> PolicyField:
    return _BY_NAME[name]


@dataclass(frozen=True)
class TLSPolicy:
    """The wanted values, RS spelling (``"1"`` is TLS 1.0); None means "leave as is"."""

    min_control_tls: str | None = None
    min_data_tls: str | None = None
    min_sentinel_tls: str | None = None
    sentinel_tls_mode: str | None = None
    control_cipher_suites: str | None = None
    data_cipher_list: str | None = None
    data_cipher_suites_tls_1_3: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> TLSPolicy:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})

    def items(self) -> list[tuple[PolicyField, str]]:
        return [(f, getattr(self, f.name)) for f in POLICY_FIELDS if getattr(self, f.name) is not None]

    def to_dict(self) -> dict[str, str]:
        return {f.name: value for f, value in self.items()}


@dataclass(frozen=True)
class Profile:
    """What a cluster of one RS version accepts in ``PUT /v1/cluster``."""

    version: str | None

    @property
    def legacy(self) -> bool:
        parsed = parse_version(self.version)
        return bool(parsed) and parsed[:3] < SENTINEL_RENAMED_SINCE

    @property
    def name(self) -> str:
        return "before 7.4.2" if self.legacy else "7.4.2 or later"

    def wire(self, policy_field: PolicyField) -> str:
        if policy_field.kind == "mode" and self.legacy:
            return "sentinel_ssl_policy"
        return policy_field.wire

    def allowed_versions(self, policy_field: PolicyField) -> tuple[str, ...]:
        if not self.legacy:
            return ("1.2", "1.3")
        return ("1", "1.1", "1.2", "1.3") if policy_field.plane == "control" else ("1", "1.1", "1.2")


def normalise(policy_field: PolicyField, value: Any) -> str | None:
    """One spelling per meaning, so the policy and GET /v1/cluster compare equal when they agree."""
    if value is None:
        return None
    if policy_field.kind == "version":
        position = rank(str(value))
        return ("1", "1.1", "1.2", "1.3")[position] if position is not None else str(value)
    if policy_field.kind == "tls13":
        return ":".join(value) if isinstance(value, list | tuple) else str(value).strip()
    return str(value).strip()


def api_value(api: Mapping[str, Any], policy_field: PolicyField) -> str | None:
    """The field as GET /v1/cluster reports it (either Sentinel spelling)."""
    if policy_field.kind == "mode":
        raw = api.get("sentinel_tls_mode") or api.get("sentinel_ssl_policy")
    else:
        raw = api.get(policy_field.wire)
    return normalise(policy_field, raw)


# --- cipher strings -------------------------------------------------------------------------


@functools.lru_cache(maxsize=128)
def tls12_suites(cipher_string: str) -> tuple[tuple[str, str], ...] | None:
    """``(name, auth)`` of every TLS <= 1.2 suite the string selects (at any security level),
    or None when OpenSSL cannot read it. ``auth`` is OpenSSL's ``auth-rsa``, ``auth-ecdsa``, ..."""
    if not cipher_string.strip():
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.set_ciphers(f"{cipher_string}:@SECLEVEL=0")
    except ssl.SSLError:
        return None
    return tuple((c["name"], c["auth"]) for c in context.get_ciphers() if c["protocol"] != "TLSv1.3")


def allowed_tls12(cipher_string: str | None) -> frozenset[str] | None:
    suites = tls12_suites(cipher_string) if cipher_string else None
    return frozenset(name for name, _ in suites) if suites is not None else None


def _cipher_problems(policy_field: PolicyField, value: str) -> tuple[list[str], list[str]]:
    """(refusals, notes) for one cipher field value."""
    if policy_field.kind == "tls13":
        unknown = [s for s in value.split(":") if s and s not in TLS13_SUITES]
        if unknown:
            return [f"{policy_field.name}: unknown TLS 1.3 suite(s) {', '.join(unknown)} "
                    f"(known: {', '.join(sorted(TLS13_SUITES))})"], []
        return [], []
    if tls12_suites(value) is not None:
        return [], []
    if policy_field.plane == "data":
        return [f"{policy_field.name}: OpenSSL selects no cipher suite from {value!r}"], []
    return [], [f"{policy_field.name}: the local OpenSSL cannot read {value!r} (BoringSSL syntax?); "
                "the audit will not compare accepted suites with it"]


# --- the plan of a PUT /v1/cluster ----------------------------------------------------------


@dataclass(frozen=True)
class UpdatePlan:
    """What ``PUT /v1/cluster`` must carry to reach the policy, or why it must not be sent."""

    profile: Profile
    fields: dict[str, Any] = field(default_factory=dict)  # RS field name -> value (differences only)
    refusals: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()  # inventory names already as wanted

    @property
    def ok(self) -> bool:
        return not self.refusals

    @property
    def sentinel_restart(self) -> bool:
        return any(f.plane == "sentinel" and self.profile.wire(f) in self.fields for f in POLICY_FIELDS)

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile.name, "version": self.profile.version, "fields": self.fields,
                "refusals": list(self.refusals), "notes": list(self.notes), "unchanged": list(self.unchanged),
                "sentinel_restart": self.sentinel_restart}


def plan_update(
    policy: TLSPolicy,
    profile: Profile,
    current: Mapping[str, Any],
    cert_key_types: Mapping[str, str] | None = None,
) -> UpdatePlan:
    """Check every policy value against the cluster's version and the served key types, and
    list the fields that differ from ``current`` (GET /v1/cluster). Pure."""
    refusals: list[str] = []
    notes: list[str] = []
    changes: dict[str, Any] = {}
    unchanged: list[str] = []
    for policy_field, value in policy.items():
        wire = profile.wire(policy_field)
        if policy_field.kind == "version":
            allowed = profile.allowed_versions(policy_field)
            if normalise(policy_field, value) not in allowed:
                removed = "" if profile.legacy else " (TLS 1.0 and 1.1 were removed in RS 7.4.2)"
                refusals.append(f"{policy_field.name}={label(value)}: RS {profile.version or '(unknown version)'} "
                                f"accepts only {', '.join(label(v) for v in allowed)} for {wire}{removed}")
                continue
        elif policy_field.kind == "mode":
            if value not in SENTINEL_MODES:
                refusals.append(f"{policy_field.name}={value!r}: not one of {', '.join(SENTINEL_MODES)}")
                continue
        else:
            bad, remarks = _cipher_problems(policy_field, value)
            refusals += bad
            notes += remarks
            if bad:
                continue
        if normalise(policy_field, value) == api_value(current, policy_field):
            unchanged.append(policy_field.name)
        else:
            changes[wire] = normalise(policy_field, value)
    refusals += _key_type_refusals(policy, current, cert_key_types or {})
    wanted_mode = policy.sentinel_tls_mode or api_value(current, _BY_NAME["sentinel_tls_mode"])
    if policy.min_sentinel_tls and wanted_mode != "required":
        notes.append("min_sentinel_tls is enforced only with sentinel_tls_mode=required")
    if not refusals and any(f.plane == "sentinel" and profile.wire(f) in changes for f in POLICY_FIELDS):
        notes.append(f"Sentinel settings change: {RESTART_HINT}")
    return UpdatePlan(profile, changes, tuple(refusals), tuple(notes), tuple(unchanged))


def _key_type_refusals(policy: TLSPolicy, current: Mapping[str, Any], key_types: Mapping[str, str]) -> list[str]:
    """A cipher list that the certificates served today cannot use would cut off TLS 1.2 clients."""
    merged = {**current}
    for policy_field, value in policy.items():
        merged[policy_field.wire] = value
    refusals = []
    for cert_name, key_type in sorted(key_types.items()):
        for problem in cipher_key_problems(cert_name, key_type, merged):
            refusals.append(f"{problem}; rotate {cert_name} to a matching key first")
    return refusals


# --- certificates and ciphers together ------------------------------------------------------


def cipher_key_problems(cert_name: str, key_type: str, settings: Mapping[str, Any]) -> list[str]:
    """Can a ``key_type`` ("rsa" / "ecdsa") certificate named ``cert_name`` be used with the
    TLS 1.2 suites ``settings`` (GET /v1/cluster fields) configure for its path?

    Follows RS 8.2.0-25 (RN-820-25): ``api``/``cm``/``metrics_exporter`` are checked against
    ``control_cipher_suites``, ``proxy`` against ``data_cipher_list``; an ECDSA key is refused
    when the list has only RSA-authenticated suites, an RSA key when it has only ECDSA ones.
    TLS 1.3 suites do not depend on the key type, and RS 8.2 still refuses while TLS 1.3 is
    allowed (TLS 1.2 clients would fail), so we refuse too; only when the path's minimum is
    1.3 is the TLS 1.2 list irrelevant. A list the local OpenSSL cannot read is not judged.
    """
    plane = "control" if cert_name in CONTROL_CERTS else "data" if cert_name in DATA_CERTS else None
    if plane is None or key_type not in ("rsa", "ecdsa"):
        return []
    if api_value(settings, MIN_FIELD[plane]) == "1.3":
        return []
    cipher_field = CIPHER_FIELD[plane]
    value = settings.get(cipher_field.wire)
    suites = tls12_suites(str(value)) if value else None
    if not suites:
        return []
    auths = {auth for _, auth in suites}
    if f"auth-{key_type}" in auths:
        return []
    usable = "RSA" if "auth-rsa" in auths else "ECDSA" if "auth-ecdsa" in auths else "no certificate"
    article = "an" if key_type == "ecdsa" else "a"
    return [f"{cert_name}: {article} {key_type.upper()} key cannot be used with {cipher_field.wire} {value!r}, "
            f"whose TLS 1.2 suites authenticate with {usable} keys only (RS 8.2 refuses this upload)"]


def key_type_of(public_key: object) -> str | None:
    if isinstance(public_key, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ecdsa"
    return None


def cipher_key_check(settings: Mapping[str, Any]) -> Callable[[Any, Any], list[str]]:
    """An ``extra_checks`` entry for ``validate_issued``: ``(bundle, request) -> problems``."""
    frozen = dict(settings)

    def check_cipher_key_compatibility(bundle: Any, request: Any) -> list[str]:
        key_type = key_type_of(bundle.leaf.public_key())
        return cipher_key_problems(str(request.cert_name), key_type or "", frozen)

    return check_cipher_key_compatibility


__all__ = [
    "AUDITED_VERSIONS",
    "POLICY_FIELDS",
    "PolicyField",
    "Profile",
    "TLSPolicy",
    "UpdatePlan",
    "allowed_tls12",
    "api_value",
    "cipher_key_check",
    "cipher_key_problems",
    "plan_update",
    "tls12_suites",
]
