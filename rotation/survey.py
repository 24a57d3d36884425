"""What every managed certificate of a cluster looks like right now, and whether it is due.

One probe batch per cluster: all endpoints of all certificates are handshaken concurrently
under the cluster's cap (never one task or one loop iteration per endpoint).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from rotation.cluster import ClusterSession
from rotation.config import Inventory
from rotation.model import CertName, Endpoint, ServedCert
from rotation.policy import Health, Verdict, judge
from rotation.probe import probe_endpoints


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
