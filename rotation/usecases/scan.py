"""The scan: what every managed certificate of a cluster looks like right now, and whether it is due.

One probe batch per cluster: all endpoints of all certificates are handshaken concurrently
under the cluster's cap (never one task or one loop iteration per endpoint). ``survey_cluster``
reads and judges (also what `check` shows); ``scan_cluster`` is beat's: it also stores what each
node serves and says which certificates to rotate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from rotation.adapters.clock import utc_now
from rotation.adapters.cluster import ClusterSession
from rotation.adapters.tls.probe import probe_endpoints
from rotation.config import Inventory
from rotation.core.errors import RotationError
from rotation.core.model import CertName, Endpoint, ServedCert
from rotation.core.renewal import Health, Verdict, judge
from rotation.usecases.context import ServiceContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CertState:
    cluster: str
    cert_name: CertName
    verdict: Verdict
    served: tuple[ServedCert, ...]

    @property
    def health(self) -> Health:
        return self.verdict.health


def survey_cluster(
    inventory: Inventory,
    session: ClusterSession,
    now: Callable[[], datetime],
    cert_names: Sequence[CertName] | None = None,
) -> list[CertState]:
    """Probe every managed certificate once and judge it. REST errors propagate; handshake
    failures become UNREACHABLE verdicts."""
    names = list(cert_names or session.settings.certificates)
    view = session.view(refresh=True)
    by_cert: dict[CertName, list[Endpoint]] = {n: view.endpoints(n) for n in names if n.is_served}
    flat = [e for endpoints in by_cert.values() for e in endpoints]
    results = probe_endpoints(
        flat, concurrency=session.settings.concurrency, timeout=session.settings.handshake_timeout.total_seconds()
    )
    served_by: dict[CertName, list[ServedCert]] = {n: [] for n in names}
    for result in results:
        served_by[result.endpoint.cert_name].append(result)
    for name in names:
        if not name.is_served:
            served_by[name] = [session.rest_copy(name, from_view=True)]
    moment = now()
    states = []
    for name in names:
        renew_before = inventory.plan(session.name, name).renew_before
        states.append(CertState(session.name, name, judge(served_by[name], moment, renew_before),
                                tuple(served_by[name])))
    return states


@dataclass(frozen=True)
class ScanResult:
    cluster: str
    states: list[CertState]
    due: list[CertName]
    backing_off: list[CertName]


def _issuer_renewal_due(
    ctx: ServiceContext, inventory: Inventory, cluster: str, state: CertState, now: datetime
) -> bool:
    """ACME Renewal Information: the CA's window wins over renew_before when it offers one."""
    issuer_name = inventory.plan(cluster, state.cert_name).issuer
    served = next((s for s in state.served if s.ok and s.leaf_der), None)
    if not issuer_name or served is None:
        return False
    issuer = ctx.issuers.issuer(inventory, issuer_name)
    from cryptography import x509

    from rotation.core import certs

    try:
        due_at = issuer.renewal_due_at(certs.cert_to_pem(x509.load_der_x509_certificate(served.leaf_der)))
    except RotationError as exc:
        log.warning("renewal info for %s/%s unavailable: %s", cluster, state.cert_name, exc.message)
        return False
    return due_at is not None and due_at <= now


def scan_cluster(ctx: ServiceContext, cluster: str, *, now: datetime | None = None) -> ScanResult:
    """Probe every managed certificate of one cluster, store what each node serves, and say
    which certificates are due (inside renew_before, expired, or mismatched across nodes)."""
    inventory = ctx.inventory()
    try:
        with ctx.sessions.open(inventory, cluster) as session:
            states = survey_cluster(inventory, session, utc_now)
    except RotationError as exc:
        _record_scan(ctx, cluster, ok=False, error=exc.message)
        raise
    moment = now or utc_now()
    next_attempts = _save_scan(ctx, cluster, states, moment)
    due, backing_off = [], []
    for state in states:
        wants_rotation = state.health in (Health.DUE, Health.MISMATCH) or (
            state.health is Health.OK and _issuer_renewal_due(ctx, inventory, cluster, state, moment)
        )
        if not wants_rotation:
            continue
        next_attempt = next_attempts.get(str(state.cert_name))
        if next_attempt and datetime.fromisoformat(next_attempt) > moment:
            backing_off.append(state.cert_name)
        else:
            due.append(state.cert_name)
    return ScanResult(cluster, states, due, backing_off)


def _record_scan(ctx: ServiceContext, cluster: str, *, ok: bool, error: str | None = None) -> None:
    ctx.state.record_scan(cluster, ok=ok, error=error)


def _save_scan(ctx: ServiceContext, cluster: str, states: list[CertState], now: datetime) -> dict[str, str | None]:
    """What every node serves, per certificate, for `status` and the metrics (one Redis round trip)."""
    return ctx.state.save_scan(cluster, {
        str(state.cert_name): {
            "served": {s.endpoint.label: s.fingerprint for s in state.served},
            "not_after": {s.endpoint.label: s.not_after.isoformat() for s in state.served if s.not_after},
            "health": str(state.health),
            "reason": state.verdict.reason,
            "last_scan": now.isoformat(),
        }
        for state in states
    })
