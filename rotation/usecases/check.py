"""`rotation check` and chat's `check`: what every node serves now, read by real handshakes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.adapters.cluster import open_cluster
from rotation.config import Inventory
from rotation.core.clock import Clock
from rotation.core.errors import RotationError
from rotation.usecases.database_check import unmanaged_due
from rotation.usecases.held_check import held_certificates
from rotation.usecases.links import coupled_certificates
from rotation.usecases.ocsp_status import ProxyOcsp, proxy_ocsp
from rotation.usecases.scan import CertState, cluster_states, earliest_expiry


@dataclass
class CheckReport:
    checked_at: datetime
    states: list[CertState] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # "cluster/cert" -> what depends on it through replication (rotating it changes those peers too)
    coupled: dict[str, list[str]] = field(default_factory=dict)
    links_unread: dict[str, str] = field(default_factory=dict)  # clusters whose links could not be read
    databases: list[dict[str, Any]] = field(default_factory=list)  # unmanaged and due (database_check)
    ocsp: list[ProxyOcsp] = field(default_factory=list)  # the proxy's OCSP stapling, per cluster (6.2.12+)
    held: list[dict[str, Any]] = field(default_factory=list)  # held by a cluster, not managed (held_check)
    warnings: list[str] = field(default_factory=list)  # internode certificates near fallback, health mismatches

    @property
    def rows(self) -> list[dict[str, Any]]:
        rows = []
        now = self.checked_at
        for state in self.states:
            for served in state.served:
                left = (served.not_after - now).total_seconds() / 86400 if served.not_after else None
                rows.append({
                    "cluster": state.cluster,
                    "cert": str(state.cert_name),
                    "node": served.endpoint.node,
                    "endpoint": f"{served.endpoint.host}:{served.endpoint.port}" if served.endpoint.port
                    else served.endpoint.host,
                    "fingerprint": served.fingerprint,
                    "not_after": served.not_after.isoformat() if served.not_after else None,
                    "days_left": round(left, 1) if left is not None else None,  # a number in JSON
                    "status": str(state.health),
                    "reason": state.verdict.reason if served.ok else (served.error or ""),
                })
        return rows + self.databases + self.held

    @property
    def exit_code(self) -> int:
        if self.errors:
            return 2
        return max((*(s.health.severity for s in self.states), 1 if self.databases else 0,
                    1 if any(o.problem for o in self.ocsp) else 0, 1 if self.warnings else 0), default=0)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "errors": self.errors, "exit_code": self.exit_code, "coupled": self.coupled,
                "links_unread": self.links_unread, "ocsp": [o.to_dict() for o in self.ocsp],
                "warnings": self.warnings}


def check_clusters(inventory: Inventory, names: Sequence[str], clock: Clock = SYSTEM_CLOCK) -> CheckReport:
    """Every managed certificate of ``names`` as each node serves it, read by real handshakes."""
    states, errors, databases, ocsp = [], [], [], []
    held: list[dict[str, Any]] = []
    warnings: list[str] = []
    for name in names:
        try:
            with open_cluster(inventory, name) as session:
                found = cluster_states(inventory, session, clock)
                states.extend(found)
                databases += unmanaged_due(inventory, session, clock.now())
                view = held_certificates(inventory, session, clock.now(), earliest_expiry(found))
                held, warnings = held + view.rows, warnings + view.warnings
                stapling = proxy_ocsp(session)
                ocsp += [stapling] if stapling is not None else []
        except RotationError as exc:
            errors.append(exc.message)
    report = CheckReport(checked_at=clock.now(), states=states, errors=errors, databases=databases, ocsp=ocsp,
                         held=held, warnings=warnings)
    report.coupled, report.links_unread = coupled_certificates(inventory, ((s.cluster, s.cert_name) for s in states))
    return report


__all__ = ["CheckReport", "check_clusters"]
