"""Every certificate a cluster holds, beside the ones the inventory manages (pure).

``GET /v1/cluster/certificates`` names more than the five served slots: ``ldap_client``, the
internode-encryption (INE) certificates, ``mtls_trusted_ca``, SSO ones and names a newer RS adds. `check`
lists each name the inventory does not manage as *unmanaged* with days left, and warns about:

* a customer INE certificate within :data:`FALLBACK_WARNING` of RS's silent fallback: RS swaps in a
  self-signed one 5 days before a customer INE certificate expires (``redis-enterprise-api.md`` §7.1), so
  the warning starts 5 + 7 = 12 days before expiry. RS's own INE certificates are renewed by RS long
  before that, so any INE certificate this close is a customer's that nobody renewed;
* where the cluster offers ``GET /v4/cluster/health`` (8.0.16+): a certificate the report lists that the
  cluster's copy lacks (or the reverse), and an expiry the report gives that differs from what the
  handshakes (or the cluster's copy) saw.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from rotation.core.slot_rules import INTERNODE_NAMES, role_of
from rotation.core.text import days_text, when_text

FALLBACK_BEFORE = timedelta(days=5)  # RS's silent INE fallback
FALLBACK_WARNING = timedelta(days=7)  # how long before that fallback `check` warns
EXPIRY_TOLERANCE = timedelta(seconds=1)  # the health report's valid_until has whole seconds


@dataclass(frozen=True)
class HeldCert:
    """One name the cluster holds, as its own copy says (``GET /v1/cluster/certificates``)."""

    name: str
    not_after: datetime | None
    fingerprint: str | None = None
    error: str | None = None  # the PEM would not parse


@dataclass(frozen=True)
class ScanWarning:
    """A warning and its stable key (the same condition keeps its key from scan to scan, so the
    notification channel hears of it once)."""

    key: str
    text: str


@dataclass(frozen=True)
class HeldView:
    cluster: str
    rows: list[dict[str, object]]
    found: list[ScanWarning]

    @property
    def warnings(self) -> list[str]:
        return [w.text for w in self.found]


def held_view(cluster: str, held: Iterable[HeldCert], managed: Iterable[str], now: datetime,
              health: Iterable[Mapping[str, object]] | None = None,
              seen: Mapping[str, datetime] | None = None, *, held_from_health: bool = False) -> HeldView:
    """Rows for the names the inventory does not manage, and the warnings about every held name.

    ``health``: the ``certificates`` of ``GET /v4/cluster/health`` (None: not offered). ``seen``: the
    earliest notAfter the handshakes (or the cluster's copy) saw per managed name, to cross-check with it.
    ``held_from_health``: ``held`` was read from that report (:func:`from_health`), so it is compared with
    what was seen only."""
    managed_names = set(managed)
    rows: list[dict[str, object]] = []
    warnings: list[ScanWarning] = []
    by_name = {cert.name: cert for cert in held}
    for cert in sorted(by_name.values(), key=lambda c: c.name):
        left = cert.not_after - now if cert.not_after else None
        days = round(left.total_seconds() / 86400, 1) if left is not None else None
        near = (cert.name in INTERNODE_NAMES and left is not None and left <= FALLBACK_BEFORE + FALLBACK_WARNING)
        if near and left is not None and cert.not_after is not None:
            fallback = cert.not_after - FALLBACK_BEFORE
            warnings.append(ScanWarning(
                f"{cert.name}|fallback|{cert.not_after.isoformat()}",
                f"{cluster}/{cert.name}: expires {when_text(cert.not_after)} ({days_text(days)} days left); "
                f"RS silently swaps in a self-signed internode certificate 5 days before expiry "
                f"({when_text(fallback)}): renew it before then"))
        if cert.name in managed_names:
            continue
        status = "warning" if near else ("expired" if left is not None and left <= timedelta(0) else "unmanaged")
        reason = cert.error or (f"not managed by the inventory ({role_of(cert.name)} certificate); "
                                f"{days_text(days)} days left" if left is not None else "not managed by the inventory")
        rows.append({"cluster": cluster, "cert": cert.name, "node": "api",
                     "endpoint": "GET /v1/cluster/certificates",
                     "fingerprint": cert.fingerprint,
                     "not_after": cert.not_after.isoformat() if cert.not_after else None,
                     "days_left": days,
                     "status": status, "reason": reason,
                     "managed": False})
    if health is not None:
        warnings += _health_mismatches(cluster, {} if held_from_health else by_name, list(health), seen or {},
                                       presence=not held_from_health)
    return HeldView(cluster, rows, warnings)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def from_health(report: Iterable[Mapping[str, object]]) -> list[HeldCert]:
    """What ``GET /v4/cluster/health`` says the cluster holds: names and expiry, no fingerprint (and, unlike
    ``GET /v1/cluster/certificates``, no private keys: what a scan reads when the cluster offers it)."""
    return [HeldCert(str(entry["type"]), _parse_time(entry.get("valid_until")))
            for entry in report if isinstance(entry.get("type"), str)]


def _health_mismatches(cluster: str, held: Mapping[str, HeldCert], report: list[Mapping[str, object]],
                       seen: Mapping[str, datetime], *, presence: bool = True) -> list[ScanWarning]:
    warnings: list[ScanWarning] = []
    listed: set[str] = set()
    for entry in report:
        name = entry.get("type")
        if not isinstance(name, str):
            continue
        listed.add(name)
        until = _parse_time(entry.get("valid_until"))
        observed = seen.get(name) or (held[name].not_after if name in held else None)
        source = "the handshakes saw" if name in seen else "the cluster's copy says"
        if presence and name not in held and name not in seen:
            warnings.append(ScanWarning(f"{name}|health-only", f"{cluster}/{name}: GET /v4/cluster/health lists it, "
                                        "GET /v1/cluster/certificates does not"))
        elif until is not None and observed is not None and abs(until - observed) > EXPIRY_TOLERANCE:
            warnings.append(ScanWarning(f"{name}|health-expiry|{until.isoformat()}|{observed.isoformat()}",
                                        f"{cluster}/{name}: GET /v4/cluster/health says valid until "
                                        f"{when_text(until)}, {source} {when_text(observed)}"))
    for name in sorted(set(held) - listed):
        warnings.append(ScanWarning(f"{name}|not-in-health", f"{cluster}/{name}: held (GET /v1/cluster/certificates) "
                                    "but missing from GET /v4/cluster/health"))
    return warnings


__all__ = ["FALLBACK_BEFORE", "FALLBACK_WARNING", "HeldCert", "HeldView", "ScanWarning", "from_health", "held_view"]
