"""Every certificate a cluster holds (``GET /v1/cluster/certificates``), for `check` and the scan: the names
the inventory does not manage as *unmanaged* rows, and the warnings of ``core.held_certs`` (a customer
internode certificate near RS's silent fallback; the health report disagreeing with what was seen)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rotation.adapters.cluster import ClusterSession
from rotation.config import Inventory
from rotation.core import certs
from rotation.core.errors import CertificateError, RotationError
from rotation.core.held_certs import HeldCert, HeldView, ScanWarning, from_health, held_view
from rotation.core.versions import CLUSTER_HEALTH_SINCE, at_least


@functools.lru_cache(maxsize=256)
def _leaf_facts(pem: str, where: str) -> tuple[datetime, str]:
    """The leaf's notAfter and fingerprint, parsed once per PEM: a cluster holds the same ones scan after scan."""
    leaf = certs.load_certificates(pem, where=where)[0]
    return certs.not_after(leaf), certs.fingerprint(leaf)


def _held(session: ClusterSession) -> list[HeldCert]:
    held = []
    for name, pair in session.certificates().items():
        try:
            not_after, fingerprint = _leaf_facts(pair.certificate, f"{session.name} {name}_cert")
        except CertificateError as exc:  # not cached: lru_cache keeps results only
            held.append(HeldCert(name, None, error=exc.message))
            continue
        held.append(HeldCert(name, not_after, fingerprint))
    return held


@dataclass(frozen=True)
class HeldRead:
    """What :func:`read_held` read from one cluster, judged later by :func:`judge_held` (the fleet check reads
    it while the handshakes run, and judges it against what they saw once they are done)."""

    cluster: str
    held: list[HeldCert]
    managed: list[str]
    health: list[dict[str, Any]] | None  # the health report's certificates (None: not offered or unread)
    problems: tuple[ScanWarning, ...]  # what could not be read (a warning: it must not stop a check or a scan)
    held_from_health: bool


def read_held(inventory: Inventory, session: ClusterSession, *, prefer_health: bool = False) -> HeldRead:
    """The REST reads of :func:`held_certificates`, nothing judged yet."""
    managed = [str(name) for name in inventory.targets(session.name)]
    rest_client = inventory.cluster(session.name).rest_client
    if rest_client is not None and rest_client.manage_trusted_ca:
        managed.append("mtls_trusted_ca")  # rest_client's companion keeps it
    health = None
    problems: list[ScanWarning] = []
    if at_least(session.view().version, CLUSTER_HEALTH_SINCE):
        try:
            health = session.client.health_certificates()
        except RotationError as exc:
            problems.append(ScanWarning("health|unread",
                                        f"{session.name}: GET /v4/cluster/health not read: {exc.message}"))
    if prefer_health and health is not None:
        return HeldRead(session.name, from_health(health), managed, health, tuple(problems), held_from_health=True)
    try:
        held = _held(session)
    except RotationError as exc:  # warnings only: renewals and the rest of `check` go on without them
        held = []
        problems.append(ScanWarning("certificates|unread", f"{session.name}: the certificates the cluster holds "
                                    f"(GET /v1/cluster/certificates) not read: {exc.message}"))
    return HeldRead(session.name, held, managed, health, tuple(problems), held_from_health=False)


def judge_held(read: HeldRead, now: datetime, seen: Mapping[str, datetime] | None = None) -> HeldView:
    """What :func:`read_held` read, judged at ``now`` and cross-checked against ``seen`` (pure)."""
    view = held_view(read.cluster, read.held, read.managed, now, read.health, seen,
                     held_from_health=read.held_from_health)
    return HeldView(view.cluster, view.rows, [*view.found, *read.problems])


def held_certificates(inventory: Inventory, session: ClusterSession, now: datetime,
                      seen: Mapping[str, datetime] | None = None, *, prefer_health: bool = False) -> HeldView:
    """What the cluster holds beside what the inventory manages; the health report cross-checked where
    the cluster offers it (8.0.16+) against ``seen`` (``scan.earliest_expiry``: what the handshakes saw).
    A report that cannot be read is a warning, not an error. ``prefer_health`` (the scan): where the report
    is offered, what the cluster holds is read from it alone, so no private key is fetched."""
    return judge_held(read_held(inventory, session, prefer_health=prefer_health), now, seen)


__all__ = ["HeldRead", "held_certificates", "judge_held", "read_held"]
