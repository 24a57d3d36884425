"""What the handshakes saw, and every difference from the policy and from GET /v1/cluster.

Pure: the observations are produced by ``rotation.adapters.tls.audit``; the rules of what each field
means live in ``rotation.core.tls_rules``.

Two kinds of drift:

* ``config``: the inventory's ``tls_policy`` differs from what ``GET /v1/cluster`` reports;
* ``enforcement``: a handshake contradicts the cluster's own settings (a version below the
  minimum accepted, an allowed version refused, a TLS 1.2 suite outside the configured list
  accepted, the discovery service not honouring ``sentinel_tls_mode``). Where the cluster does
  not report a field, the policy's value is the yardstick.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rotation.core.tls_rules import (
    CIPHER_FIELD,
    MIN_FIELD,
    RESTART_HINT,
    PolicyField,
    TLSPolicy,
    allowed_tls12,
    api_value,
    field_named,
    label,
    normalise,
    rank,
)


@dataclass(frozen=True)
class AuditTarget:
    """One TLS listener to audit: ``plane`` decides which settings apply to it."""

    plane: str  # control | data | sentinel
    service: str  # cm | api | metrics_exporter | proxy | discovery
    node: str
    host: str
    port: int
    sni: str | None = None

    @property
    def label(self) -> str:
        return f"{self.service}@node{self.node} {self.host}:{self.port}"


@dataclass(frozen=True)
class VersionProbe:
    version: str  # "1.0" .. "1.3"
    accepted: bool | None  # None: not tested (client cannot offer it, or unreachable)
    cipher: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class EndpointTLS:
    target: AuditTarget
    versions: tuple[VersionProbe, ...] = ()
    tls12_ciphers: tuple[str, ...] | None = None  # accepted one at a time; None = not scanned
    ciphers_tried: int = 0
    key_type: str | None = None
    plaintext: bool | None = None  # discovery service: plain (non-TLS) connections accepted?
    error: str | None = None  # unreachable

    def accepted(self) -> list[str]:
        return [v.version for v in self.versions if v.accepted]

    def to_dict(self) -> dict[str, Any]:
        t = self.target
        return {"plane": t.plane, "service": t.service, "node": t.node, "endpoint": f"{t.host}:{t.port}",
                "versions": {v.version: {"accepted": v.accepted, "cipher": v.cipher, "error": v.error}
                             for v in self.versions},
                "tls12_ciphers": list(self.tls12_ciphers) if self.tls12_ciphers is not None else None,
                "ciphers_tried": self.ciphers_tried, "key_type": self.key_type, "plaintext": self.plaintext,
                "error": self.error}


@dataclass(frozen=True)
class Drift:
    """One difference. ``kind``: ``config`` (policy vs GET /v1/cluster) or ``enforcement``
    (handshakes vs GET /v1/cluster)."""

    kind: str
    plane: str
    where: str
    message: str
    field: str | None = None
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "plane": self.plane, "where": self.where, "field": self.field,
                "message": self.message, "hint": self.hint}


def _shown(policy_field: PolicyField, value: str | None) -> str:
    if value is None:
        return "nothing"
    return label(value) if policy_field.kind == "version" else repr(value)


def config_drift(policy: TLSPolicy | None, api: Mapping[str, Any]) -> list[Drift]:
    result = []
    for policy_field, value in (policy.items() if policy else []):
        wanted, reported = normalise(policy_field, value), api_value(api, policy_field)
        if wanted != reported:
            result.append(Drift("config", policy_field.plane, "GET /v1/cluster",
                                f"{policy_field.name}: policy {_shown(policy_field, wanted)}, cluster reports "
                                f"{_shown(policy_field, reported)}",
                                field=policy_field.wire, hint="run `rotation policy apply`"))
    return result


def _effective(api: Mapping[str, Any], policy: TLSPolicy | None, policy_field: PolicyField) -> str | None:
    """What the handshakes should match: the cluster's own setting, else the policy."""
    reported = api_value(api, policy_field)
    if reported is not None:
        return reported
    return normalise(policy_field, getattr(policy, policy_field.name)) if policy else None


def enforcement_drift(endpoint: EndpointTLS, api: Mapping[str, Any], policy: TLSPolicy | None) -> list[Drift]:
    target = endpoint.target
    if endpoint.error:
        return []
    if target.plane == "sentinel":
        return _sentinel_drift(endpoint, api, policy)
    result = _version_drift(endpoint, _effective(api, policy, MIN_FIELD[target.plane]), MIN_FIELD[target.plane])
    cipher_field = CIPHER_FIELD[target.plane]
    allowed = allowed_tls12(_effective(api, policy, cipher_field))
    if allowed is not None:
        seen = set(endpoint.tls12_ciphers or ())
        seen |= {v.cipher for v in endpoint.versions if v.accepted and v.cipher and v.version != "1.3"}
        for suite in sorted(seen - allowed):
            result.append(Drift("enforcement", target.plane, target.label,
                                f"accepts {suite}, which {cipher_field.wire} does not allow", field=cipher_field.wire))
    return result


def _version_drift(
    endpoint: EndpointTLS, minimum: str | None, min_field: PolicyField, *, refusals: bool = True, hint: str = ""
) -> list[Drift]:
    """Versions below the minimum accepted and (with ``refusals``) versions it allows refused."""
    target, floor = endpoint.target, rank(minimum)
    if floor is None:
        return []
    result = []
    for probe in endpoint.versions:
        position = rank(probe.version)
        if probe.accepted is None or position is None:
            continue
        if probe.accepted and position < floor:
            result.append(Drift("enforcement", target.plane, target.label,
                                f"accepts TLS {probe.version} although {min_field.wire} is {label(minimum)}",
                                field=min_field.wire, hint=hint))
        elif refusals and not probe.accepted and position >= floor:
            result.append(Drift("enforcement", target.plane, target.label,
                                f"refuses TLS {probe.version} although {min_field.wire} {label(minimum)} allows it",
                                field=min_field.wire, hint=hint))
    return result


def _sentinel_drift(endpoint: EndpointTLS, api: Mapping[str, Any], policy: TLSPolicy | None) -> list[Drift]:
    """TLS and plain text as ``sentinel_tls_mode`` says; the minimum only with ``required`` (RS
    enforces ``min_sentinel_TLS_version`` only then). Every finding carries the restart hint:
    the discovery service reads its settings only when restarted."""
    target = endpoint.target
    mode = _effective(api, policy, field_named("sentinel_tls_mode")) or "allowed"
    tls = bool(endpoint.accepted())
    problems = []
    if mode == "disabled" and tls:
        problems.append("accepts TLS although sentinel_tls_mode is disabled")
    if mode in ("allowed", "required") and not tls:
        problems.append(f"accepts no TLS handshake although sentinel_tls_mode is {mode}")
    if mode == "required" and endpoint.plaintext:
        problems.append("accepts plain connections although sentinel_tls_mode is required")
    if mode in ("allowed", "disabled") and endpoint.plaintext is False:
        problems.append(f"refuses plain connections although sentinel_tls_mode is {mode}")
    result = [Drift("enforcement", "sentinel", target.label, p, field="sentinel_tls_mode", hint=RESTART_HINT)
              for p in problems]
    if mode == "required" and tls:
        minimum = _effective(api, policy, MIN_FIELD["sentinel"])
        result += _version_drift(endpoint, minimum, MIN_FIELD["sentinel"], refusals=False, hint=RESTART_HINT)
    return result


def compare(policy: TLSPolicy | None, api: Mapping[str, Any], endpoints: Iterable[EndpointTLS]) -> list[Drift]:
    """Every difference between the policy, GET /v1/cluster and the handshakes."""
    result = config_drift(policy, api)
    for endpoint in endpoints:
        result += enforcement_drift(endpoint, api, policy)
    return result


__all__ = ["AuditTarget", "Drift", "EndpointTLS", "VersionProbe", "compare", "config_drift", "enforcement_drift"]
