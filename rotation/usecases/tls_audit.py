"""`rotation policy audit` and the nightly audit: what every endpoint accepts, and drift.

``audit_cluster(inventory, name)`` is what the nightly beat task, the CLI and chat call; it
never raises for cluster trouble (``report.errors``), only for a bad inventory (ConfigError).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rotation.adapters.cluster import ClusterSession, open_cluster
from rotation.adapters.tls.audit import AuditOptions, audit_endpoints, targets_of
from rotation.config import Inventory
from rotation.core.errors import RotationError
from rotation.core.tls_drift import Drift, EndpointTLS, compare
from rotation.core.tls_rules import Profile, TLSPolicy
from rotation.usecases.context import ServiceContext
from rotation.usecases.progress import Progress, Tally


@dataclass
class AuditReport:
    cluster: str
    version: str | None = None
    policy: TLSPolicy | None = None
    api: dict[str, Any] = field(default_factory=dict)
    endpoints: list[EndpointTLS] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def compliant(self) -> bool:
        return not self.drift and not self.errors

    @property
    def exit_code(self) -> int:
        return 2 if self.errors else 1 if self.drift else 0

    def summary(self, limit: int = 5) -> str:
        """One short text for a notification channel."""
        if self.compliant:
            return f"{self.cluster}: TLS policy compliant on {len(self.endpoints)} endpoint(s)"
        lines = [f"{self.cluster}: {len(self.drift)} TLS policy drift(s), {len(self.errors)} error(s)"]
        lines += [f"- {d.where}: {d.message}" for d in self.drift[:limit]]
        lines += [f"- error: {e}" for e in self.errors[:limit]]
        hidden = max(0, len(self.drift) - limit) + max(0, len(self.errors) - limit)
        return "\n".join(lines + ([f"- ... and {hidden} more"] if hidden else []))

    def to_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "version": self.version,
                "profile": Profile(self.version).name if self.version else None,
                "policy": self.policy.to_dict() if self.policy else None, "api": self.api,
                "endpoints": [e.to_dict() for e in self.endpoints], "drift": [d.to_dict() for d in self.drift],
                "errors": self.errors, "compliant": self.compliant, "exit_code": self.exit_code}


def policy_of(inventory: Inventory, name: str) -> TLSPolicy | None:
    settings = inventory.cluster(name).tls_policy
    return TLSPolicy.from_mapping(settings.model_dump()) if settings else None


def options_for(session: ClusterSession, scan_ciphers: bool = True, tally: Tally | None = None) -> AuditOptions:
    return AuditOptions(concurrency=session.settings.concurrency,
                        timeout=session.settings.handshake_timeout.total_seconds(), scan_ciphers=scan_ciphers,
                        on_planned=tally.add if tally else None, on_done=tally.advance if tally else None)


def audit_session(session: ClusterSession, policy: TLSPolicy | None, options: AuditOptions) -> AuditReport:
    """One fresh read of GET /v1/cluster and one handshake matrix; REST errors propagate."""
    view = session.view(refresh=True)
    report = AuditReport(session.name, view.version, policy, dict(view.tls_fields))
    report.endpoints = audit_endpoints(targets_of(view), options)
    report.errors += [f"{e.target.label}: {e.error}" for e in report.endpoints if e.error]
    report.drift = compare(policy, report.api, report.endpoints)
    return report


def audit_cluster(inventory: Inventory, name: str, *, scan_ciphers: bool = True,
                  tally: Tally | None = None) -> AuditReport:
    """Audit one cluster. Exit code 0 compliant, 1 drift, 2 errors (cluster or endpoints unreachable).
    ``tally`` counts its handshakes (progress)."""
    policy = policy_of(inventory, name)
    try:
        with open_cluster(inventory, name) as session:
            return audit_session(session, policy, options_for(session, scan_ciphers, tally))
    except RotationError as exc:
        return AuditReport(name, policy=policy, errors=[exc.message])


def audit_clusters(inventory: Inventory, names: list[str] | None = None, *,
                   scan_ciphers: bool = True, progress: Progress | None = None) -> list[AuditReport]:
    """Every cluster of the inventory (or ``names``), one after the other: the nightly beat job and the CLI.
    ``progress`` counts handshakes, planned as each cluster's shape is read."""
    tally = Tally(progress)
    return [audit_cluster(inventory, name, scan_ciphers=scan_ciphers, tally=tally)
            for name in (names or list(inventory.clusters))]


def audit_policy(ctx: ServiceContext, cluster: str) -> Any:
    """Audit one cluster's TLS versions and ciphers by handshakes; keep the drift count for the metrics."""
    report = audit_cluster(ctx.inventory(), cluster)
    ctx.state.record_policy_audit(cluster, drift=len(report.drift), errors=len(report.errors), summary=report.summary())
    return report



__all__ = ["AuditReport", "audit_cluster", "audit_clusters", "audit_policy", "audit_session", "options_for",
           "policy_of"]
