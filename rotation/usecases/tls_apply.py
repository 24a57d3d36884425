"""`rotation policy apply`: set the inventory's TLS policy (and ``basic_auth``) through the REST API,
then prove it.

``apply_policy`` runs: refuse what the version cannot take and what would lock the tool out
(``login_guard``; no change made) -> ``PUT /v1/cluster?dry_run``
-> ``PUT /v1/cluster`` -> audit by handshakes until they agree (or the verify deadline).
Sentinel changes need ``supervisorctl restart sentinel_service`` on every node, which the REST
API cannot do: until the handshakes agree they are reported as pending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.adapters.cluster import ClusterSession, open_cluster
from rotation.adapters.tls.audit import AuditOptions
from rotation.config import Inventory
from rotation.core import certs
from rotation.core.clock import Clock
from rotation.core.errors import ClusterAPIError, LockoutRefused, RotationError
from rotation.core.tls_rules import RESTART_HINT, Profile, TLSPolicy, UpdatePlan, key_type_of, plan_update
from rotation.usecases.login_guard import BREAK_GLASS, basic_auth_change, keep_policy_speakable
from rotation.usecases.progress import Progress, Tally
from rotation.usecases.tls_audit import AuditReport, audit_session, options_for, policy_of


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
        pairs = session.certificates()
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
            poll: float, clock: Clock) -> AuditReport:
    """Audit until control and data handshakes agree with the settings (Sentinel waits for a restart)."""
    end = clock.monotonic() + deadline
    while True:
        report = audit_session(session, policy, options)
        waiting = [d for d in report.drift if d.kind == "enforcement" and d.plane != "sentinel"]
        if not waiting or report.errors or clock.monotonic() >= end:
            return report
        clock.sleep(poll)


def apply_policy(
    inventory: Inventory, name: str, *, dry_run: bool = False, poll_interval: float = 1.0, clock: Clock = SYSTEM_CLOCK
) -> ApplyReport:
    policy = policy_of(inventory, name)
    report = ApplyReport(name)
    if (policy is None or not policy.items()) and inventory.cluster(name).basic_auth is None:
        report.errors.append(f"clusters.{name}.tls_policy: no policy to apply")
        return report
    policy = policy or TLSPolicy()
    try:
        with open_cluster(inventory, name) as session:
            _apply(session, policy, report, dry_run, poll_interval, clock)
    except RotationError as exc:
        if report.status != "refused":
            report.status = "error"
        report.errors.append(exc.message)
    return report


def apply_policies(inventory: Inventory, names: Sequence[str], *, dry_run: bool = False,
                   progress: Progress | None = None) -> list[ApplyReport]:
    """``apply_policy`` on each cluster, one after the other; ``progress`` counts the clusters done."""
    tally = Tally(progress, len(names))
    reports = []
    for name in names:
        reports.append(apply_policy(inventory, name, dry_run=dry_run))
        tally.advance()
    return reports


def _apply(session: ClusterSession, policy: TLSPolicy, report: ApplyReport, dry_run: bool, poll: float,
           clock: Clock) -> None:
    view = session.view(refresh=True)
    plan = report.plan = plan_update(policy, Profile(view.version), view.tls_fields, served_key_types(session))
    report.notes += plan.notes
    if not plan.ok:
        report.status = "refused"
        report.errors += plan.refusals
        return
    try:  # the self-lockout guard, before any change (rotation.usecases.login_guard)
        fields = {**plan.fields, **basic_auth_change(session)}
        keep_policy_speakable(session, fields)
    except LockoutRefused as exc:
        report.status = "refused"
        report.errors.append(f"{exc.message}; {BREAK_GLASS}")
        return
    if fields:
        try:
            answer = session.update_cluster(fields, dry_run=True)
        except ClusterAPIError as exc:
            report.status = "refused"
            raise RotationError(f"the cluster refused the change in its dry run: {exc.message}") from exc
        report.response = {k: answer.get(k) for k in fields}
        if dry_run:
            report.status = "dry_run"
            return
        answer = session.update_cluster(fields)
        report.response = {k: answer.get(k) for k in fields}
    elif dry_run:
        report.status = "dry_run"
        return
    audit = report.audit = _settle(session, policy, options_for(session),
                                   session.settings.verify_deadline.total_seconds(), poll, clock)
    if audit.errors:
        report.status = "error"
        report.errors += audit.errors
    elif any(d.plane != "sentinel" for d in audit.drift):
        report.status = "drift"
    elif audit.drift:
        report.status = "pending"
        report.notes.append(f"Sentinel policy pending: {RESTART_HINT}, then run `rotation policy audit`")
    else:
        report.status = "applied" if fields else "unchanged"


__all__ = ["ApplyReport", "apply_policies", "apply_policy"]
