"""`rotation policy apply`: set the inventory's TLS policy (and ``basic_auth``) through the REST API,
then prove it.

``apply_policy`` runs: refuse what the version cannot take and what would lock the tool out
(``login_guard``; no change made) -> ``PUT /v1/cluster?dry_run``
-> ``PUT /v1/cluster`` -> audit by handshakes until they agree (or the verify deadline).
Sentinel changes need ``supervisorctl restart sentinel_service`` on every node, which the REST
API cannot do: until the handshakes agree they are reported as pending.

A change holds the locks of the certificates whose listeners it changes (``locked_certificates``),
as their rotations take them: a rotation validates its certificate against the cluster's ciphers and
proves it by handshakes, and this guard judges the policy against the certificates served, so neither
may change under the other. A lock held elsewhere refuses the apply, naming its holder; the fence is
checked right before the change. An interrupt (Ctrl-C, SIGTERM) or a change whose answer never came
ends in a report that says whether the cluster may have changed.

Each apply (not a dry run) is recorded in the service's state as it starts and when it ends, like a
rotation (``RotationRecord`` of kind "policy", ``cert_name`` ``tls_policy``): who asked, the settings read
before and after, what was sent and the status, for `rotation history`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.adapters.cluster import ClusterSession, open_cluster
from rotation.adapters.state import Lease, ServiceState
from rotation.adapters.tls.audit import AuditOptions
from rotation.config import Inventory
from rotation.core import certs
from rotation.core.clock import Clock
from rotation.core.errors import (
    ClusterAPIError,
    ClusterUnavailable,
    Interrupted,
    LockoutRefused,
    RotationError,
    RotationInProgress,
)
from rotation.core.model import CertName, Outcome, RotationRecord, Trigger, new_rotation_id
from rotation.core.targets import POLICY_APPLY_OWNER, REST_CLIENT, TLS_POLICY
from rotation.core.tls_rules import RESTART_HINT, Profile, TLSPolicy, UpdatePlan, key_type_of, plan_update
from rotation.core.topology import TLS_FIELDS
from rotation.usecases.login_guard import BREAK_GLASS, basic_auth_change, keep_policy_speakable
from rotation.usecases.progress import Progress, Tally
from rotation.usecases.rotate import interrupts
from rotation.usecases.rotate.pipeline import hold_certificates
from rotation.usecases.tls_audit import AuditReport, audit_session, options_for, policy_of


@dataclass
class ApplyReport:
    """``status``: refused | unchanged | dry_run | applied | pending (Sentinel restart) | drift | interrupted
    | error."""

    cluster: str
    status: str = "error"
    plan: UpdatePlan | None = None
    response: dict[str, Any] | None = None  # what PUT /v1/cluster (?dry_run) answered, TLS fields only
    audit: AuditReport | None = None
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sent_fields: dict[str, Any] | None = None  # the body PUT /v1/cluster (not its dry run) was sent
    before: dict[str, Any] | None = None  # the settings read before the change (``recorded_settings``)
    after: dict[str, Any] | None = None  # ... and once it is proven (None: not read)
    record_id: str | None = None  # its record in the service's state (`rotation history --id`)

    @property
    def sent(self) -> bool:
        """PUT /v1/cluster (not its dry run) was sent: the cluster may have changed."""
        return self.sent_fields is not None

    @property
    def exit_code(self) -> int:
        return {"unchanged": 0, "dry_run": 0, "applied": 0, "pending": 1, "drift": 1, "interrupted": 1}.get(
            self.status, 2)

    def to_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "status": self.status, "plan": self.plan.to_dict() if self.plan else None,
                "response": self.response, "audit": self.audit.to_dict() if self.audit else None,
                "errors": self.errors, "notes": self.notes, "record": self.record_id, "exit_code": self.exit_code}


# What a record keeps of GET /v1/cluster: the settings an apply may change, by name (the answer holds much more)
RECORDED_FIELDS = TLS_FIELDS | {"control_plane_basic_authentication"}


def recorded_settings(cluster_info: dict[str, Any]) -> dict[str, Any]:
    """The TLS and Basic settings of a ``GET /v1/cluster`` answer, nothing else."""
    return {k: v for k, v in sorted(cluster_info.items()) if k in RECORDED_FIELDS}


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
        interrupts.check()


# The certificates whose listeners each plane's settings change, or that are proven by handshakes with them
# (``rest_client`` logs in on every node's REST port); a database's own certificate is locked through proxy:
# its rotation takes proxy's lock too (core/targets.py ``shared_locks``).
_PLANE_CERTIFICATES = {
    "control": (CertName.CM.value, CertName.API.value, CertName.METRICS_EXPORTER.value, REST_CLIENT),
    "data": (CertName.PROXY.value,),
    "sentinel": (CertName.PROXY.value,),
}


def locked_certificates(policy: TLSPolicy, basic_auth: bool | None) -> list[str]:
    """The certificates whose rotations a change of ``policy`` (and ``basic_auth``) must not overlap: those
    of the listeners it changes, and ``rest_client`` for Basic (whose guard proves the tool's certificate)."""
    names = [cert for policy_field, _ in policy.items() for cert in _PLANE_CERTIFICATES[policy_field.plane]]
    return list(dict.fromkeys([*names, *([REST_CLIENT] if basic_auth is not None else [])]))


def apply_policy(
    inventory: Inventory, name: str, *, state: ServiceState | None, dry_run: bool = False,
    poll_interval: float = 1.0, clock: Clock = SYSTEM_CLOCK, requested_by: str | None = None
) -> ApplyReport:
    """``state`` holds the locks and the apply's record (None only for ``dry_run``, which changes nothing,
    takes no lock and leaves no record); ``requested_by``: who asked, for the record."""
    policy = policy_of(inventory, name)
    report = ApplyReport(name)
    basic_auth = inventory.cluster(name).basic_auth
    if (policy is None or not policy.items()) and basic_auth is None:
        report.errors.append(f"clusters.{name}.tls_policy: no policy to apply")
        return report
    policy = policy or TLSPolicy()
    if state is None and not dry_run:
        raise ValueError("apply_policy changes the cluster: it needs the state that holds the locks")
    record = None
    if state is not None and not dry_run:
        record = RotationRecord(id=new_rotation_id(), cluster=name, cert_name=TLS_POLICY, trigger=Trigger.CLI,
                                started_at=clock.now(), requested_by=requested_by,
                                policy=_change(report, "in_progress"))
        report.record_id = record.id
    try:
        if state is not None and record is not None:
            state.save(record)  # before anything is read or sent: no change without its record
        with open_cluster(inventory, name) as session, contextlib.ExitStack() as held:
            lease = None
            if state is not None and not dry_run:
                lease = held.enter_context(hold_certificates(state, session, locked_certificates(policy, basic_auth),
                                                             POLICY_APPLY_OWNER))
                if record is not None:
                    _end_abandoned(state, record, report, clock)
            _apply(session, policy, report, dry_run, poll_interval, clock, lease)
    except RotationInProgress as exc:
        report.status = "refused"
        report.errors.append(f"{exc.message}; nothing changed: apply the policy once it ends")
    except RotationError as exc:
        if report.status != "refused":
            report.status = "error"
        report.errors.append(exc.message)
        if report.sent and isinstance(exc, ClusterUnavailable):
            report.errors.append("PUT /v1/cluster got no answer: the cluster may have taken the change; "
                                 "`rotation policy audit` shows what it enforces")
    except (KeyboardInterrupt, Interrupted) as exc:
        report.status = "interrupted"
        what = "SIGTERM" if isinstance(exc, Interrupted) else "interrupted (Ctrl-C)"
        report.errors.append(
            f"{what} after PUT /v1/cluster: the change is made, not proven by handshakes; "
            "`rotation policy audit` shows what the cluster enforces" if report.sent else
            f"{what} before any change: nothing changed")
    if state is not None and report.audit is not None:
        _keep_audit(state, report, report.audit)
    if state is not None and record is not None:
        _keep_record(state, record, report, clock)
    return report


def _change(report: ApplyReport, status: str) -> dict[str, Any]:
    """A record's ``policy``: see ``RotationRecord.policy``."""
    return {"status": status, "before": report.before, "sent": report.sent_fields, "after": report.after}


# A record's outcome, for what reads every record alike; its ``policy.status`` is the apply's own word
# (pending, drift, error and interrupted all end as failed: not proven, see ``sent``)
_OUTCOMES = {"applied": Outcome.VERIFIED, "unchanged": Outcome.VERIFIED, "refused": Outcome.REFUSED}


def _keep_record(state: ServiceState, record: RotationRecord, report: ApplyReport, clock: Clock) -> None:
    record.finished_at = clock.now()
    record.outcome = _OUTCOMES.get(report.status, Outcome.FAILED)
    record.error = "; ".join(report.errors) or None
    record.warnings = list(report.notes)
    record.policy = _change(report, report.status)
    try:
        state.save(record)
    except RotationError as exc:
        report.notes.append(f"its record could not be kept in the service's state: {exc.message}")


def _end_abandoned(state: ServiceState, record: RotationRecord, report: ApplyReport, clock: Clock) -> None:
    """Earlier applies of this cluster still ``in_progress`` while this one holds its locks: the process that
    ran them stopped before they ended (killed, its host lost), so nothing else ends their records."""
    for earlier in state.history(record.cluster, TLS_POLICY, limit=ABANDONED_LOOKBACK):
        if earlier.id == record.id or earlier.outcome is not Outcome.IN_PROGRESS:
            continue
        earlier.finished_at, earlier.outcome = clock.now(), Outcome.FAILED
        earlier.error = (f"the process running it stopped before it ended; apply {record.id} found it: the cluster "
                         "may have taken its change, `rotation policy audit` shows what it enforces")
        earlier.policy = {**(earlier.policy or {}), "status": "interrupted"}
        state.save(earlier)
        report.notes.append(f"an earlier apply ({earlier.id}) never ended: recorded as interrupted")


ABANDONED_LOOKBACK = 20  # an apply's own earlier records looked at (each ended one is ended for good)


def _keep_audit(state: ServiceState, report: ApplyReport, audit: AuditReport) -> None:
    """The apply's audit replaces the last one the service keeps, like the nightly audit's: the drift
    metric and its alert follow the change now, not at the next night's audit."""
    summary = f"policy apply ({report.status}): {audit.summary()}"
    try:
        state.record_policy_audit(report.cluster, drift=len(audit.drift), errors=len(audit.errors), summary=summary)
    except RotationError as exc:
        report.notes.append(f"its audit could not be kept in the service's state: {exc.message}")


def apply_policies(inventory: Inventory, names: Sequence[str], *, state: ServiceState | None,
                   dry_run: bool = False, progress: Progress | None = None,
                   requested_by: str | None = None) -> list[ApplyReport]:
    """``apply_policy`` on each cluster, one after the other; ``progress`` counts the clusters done. SIGTERM
    unwinds like Ctrl-C: the cluster being changed is reported, the clusters after it are not touched."""
    tally = Tally(progress, len(names))
    reports = []
    with interrupts.sigterm_unwinds():
        for name in names:
            reports.append(apply_policy(inventory, name, state=state, dry_run=dry_run, requested_by=requested_by))
            tally.advance()
            if reports[-1].status == "interrupted":
                break
    return reports


def _apply(session: ClusterSession, policy: TLSPolicy, report: ApplyReport, dry_run: bool, poll: float,
           clock: Clock, lease: Lease | None) -> None:
    info = session.client.cluster_info()  # once the locks are held: what the plan starts from, and "before"
    view = session.view(refresh=True, info=info)
    if report.record_id is not None:
        report.before = recorded_settings(info)
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
        interrupts.check()
        if lease is not None:
            lease.check()  # only the locks' holder changes the cluster (Superseded: nothing sent)
        report.sent_fields = dict(fields)
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
    if report.record_id is not None:
        try:  # what it is now, as the cluster says it
            report.after = recorded_settings(session.client.cluster_info())
        except RotationError as exc:
            report.notes.append(f"the settings after the change could not be read: {exc.message}")


__all__ = ["ApplyReport", "apply_policies", "apply_policy", "locked_certificates"]
