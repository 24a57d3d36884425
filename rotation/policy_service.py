"""TLS policy use cases: audit a cluster by handshakes, apply the inventory's policy.

``audit_cluster(inventory, name)`` is what the nightly beat task, the CLI and chat call; it
never raises for cluster trouble (``report.errors``), only for a bad inventory (ConfigError).
``apply_policy`` runs: refuse what the version cannot take (no call) -> ``PUT /v1/cluster?dry_run``
-> ``PUT /v1/cluster`` -> audit by handshakes until they agree (or the verify deadline).
Sentinel changes need ``supervisorctl restart sentinel_service`` on every node, which the REST
API cannot do: until the handshakes agree they are reported as pending.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rotation import certs
from rotation.cluster import ClusterSession, open_cluster
from rotation.config import Inventory
from rotation.errors import ClusterAPIError, RotationError
from rotation.tls_audit import AuditOptions, audit_endpoints, targets_of
from rotation.tls_drift import Drift, EndpointTLS, compare
from rotation.tls_policy import RESTART_HINT, Profile, TLSPolicy, UpdatePlan, key_type_of, plan_update


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


def options_for(session: ClusterSession, scan_ciphers: bool = True) -> AuditOptions:
    return AuditOptions(concurrency=session.settings.concurrency,
                        timeout=session.settings.handshake_timeout.total_seconds(), scan_ciphers=scan_ciphers)


def audit_session(session: ClusterSession, policy: TLSPolicy | None, options: AuditOptions) -> AuditReport:
    """One fresh read of GET /v1/cluster and one handshake matrix; REST errors propagate."""
    view = session.view(refresh=True)
    report = AuditReport(session.name, view.version, policy, dict(view.tls_fields))
    report.endpoints = audit_endpoints(targets_of(view), options)
    report.errors += [f"{e.target.label}: {e.error}" for e in report.endpoints if e.error]
    report.drift = compare(policy, report.api, report.endpoints)
    return report


def audit_cluster(inventory: Inventory, name: str, *, scan_ciphers: bool = True) -> AuditReport:
    """Audit one cluster. Exit code 0 compliant, 1 drift, 2 errors (cluster or endpoints unreachable)."""
    policy = policy_of(inventory, name)
    try:
        with open_cluster(inventory, name) as session:
            return audit_session(session, policy, options_for(session, scan_ciphers))
    except RotationError as exc:
        return AuditReport(name, policy=policy, errors=[exc.message])


def audit_clusters(inventory: Inventory, names: list[str] | None = None, *,
                   scan_ciphers: bool = True) -> list[AuditReport]:
    """Every cluster of the inventory (or ``names``), one after the other: the nightly beat job."""
    return [audit_cluster(inventory, name, scan_ciphers=scan_ciphers) for name in (names or list(inventory.clusters))]


# --- apply ------------------------------------------------------------------------------------


@dataclass
class ApplyReport:
    """``status``: refused | unchanged | dry_run | applied | pending (Sentinel restart) | drift | error."""

    cluster: str
    status: str = "error"
    plan: UpdatePlan | None = None
    response: dict[str, Any] | None = None  # what PUT /v1/cluster (?dry_run) answered, TLS fields only
    audit: AuditReport | None = None
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return {"unchanged": 0, "dry_run": 0, "applied": 0, "pending": 1, "drift": 1}.get(self.status, 2)

    def to_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "status": self.status, "plan": self.plan.to_dict() if self.plan else None,
                "response": self.response, "audit": self.audit.to_dict() if self.audit else None,
                "errors": self.errors, "notes": self.notes, "exit_code": self.exit_code}


def served_key_types(session: ClusterSession) -> dict[str, str]:
    """Key type of each cluster certificate (GET /v1/cluster/certificates); {} if not readable."""
    try:
        pairs = session.client.certificates()
    except ClusterAPIError:
        return {}
    result = {}
    for name, pair in pairs.items():
        try:
            key_type = key_type_of(certs.load_certificates(pair.certificate, where=name)[0].public_key())
        except RotationError:
            continue
        if key_type:
            result[name] = key_type
    return result


def _settle(session: ClusterSession, policy: TLSPolicy, options: AuditOptions, deadline: float,
            poll: float) -> AuditReport:
    """Audit until control and data handshakes agree with the settings (Sentinel waits for a restart)."""
    end = time.monotonic() + deadline
    while True:
        report = audit_session(session, policy, options)
        waiting = [d for d in report.drift if d.kind == "enforcement" and d.plane != "sentinel"]
        if not waiting or report.errors or time.monotonic() >= end:
            return report
        time.sleep(poll)


def apply_policy(
    inventory: Inventory, name: str, *, dry_run: bool = False, poll_interval: float = 1.0
) -> ApplyReport:
    policy = policy_of(inventory, name)
    report = ApplyReport(name)
    if policy is None or not policy.items():
        report.errors.append(f"clusters.{name}.tls_policy: no policy to apply")
        return report
    try:
        with open_cluster(inventory, name) as session:
            _apply(session, policy, report, dry_run, poll_interval)
    except RotationError as exc:
        if report.status != "refused":
            report.status = "error"
        report.errors.append(exc.message)
    return report


def _apply(session: ClusterSession, policy: TLSPolicy, report: ApplyReport, dry_run: bool, poll: float) -> None:
    view = session.view(refresh=True)
    plan = report.plan = plan_update(policy, Profile(view.version), view.tls_fields, served_key_types(session))
    report.notes += plan.notes
    if not plan.ok:
        report.status = "refused"
        report.errors += plan.refusals
        return
    if plan.fields:
        try:
            answer = session.client.update_cluster(plan.fields, dry_run=True)
        except ClusterAPIError as exc:
            report.status = "refused"
            raise RotationError(f"the cluster refused the change in its dry run: {exc.message}") from exc
        report.response = {k: answer.get(k) for k in plan.fields}
        if dry_run:
            report.status = "dry_run"
            return
        answer = session.client.update_cluster(plan.fields)
        report.response = {k: answer.get(k) for k in plan.fields}
    elif dry_run:
        report.status = "dry_run"
        return
    audit = report.audit = _settle(session, policy, options_for(session),
                                   session.settings.verify_deadline.total_seconds(), poll)
    if audit.errors:
        report.status = "error"
        report.errors += audit.errors
    elif any(d.plane != "sentinel" for d in audit.drift):
        report.status = "drift"
    elif audit.drift:
        report.status = "pending"
        report.notes.append(f"Sentinel policy pending: {RESTART_HINT}, then run `rotation policy audit`")
    else:
        report.status = "applied" if plan.fields else "unchanged"


__all__ = ["ApplyReport", "AuditReport", "apply_policy", "audit_cluster", "audit_clusters", "audit_session",
           "policy_of"]
