"""rotate(): the only module that knows the order of the steps.

read what is served -> issue -> validate -> push -> verify on every node -> (roll back).

Safety rules: nothing is pushed before validation passes and before the previous
certificate and key are in hand for a rollback; after a push, success means every endpoint
presents the new fingerprint on a fresh handshake; otherwise the previous pair goes back and
is verified the same way.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from rotation import certs
from rotation.cluster import ClusterSession, build_issuer, default_key_type
from rotation.config import CertPlan, Inventory
from rotation.errors import (
    ClusterAPIError,
    RotationError,
    RotationInProgress,
    VerificationError,
)
from rotation.issuers import Issuer
from rotation.logs import rotation_context
from rotation.model import (
    CertName,
    IssuedCert,
    Outcome,
    RotationRecord,
    SecretPEM,
    ServedCert,
    Step,
    Trigger,
)
from rotation.secrets import SecretStore
from rotation.store import Locker, RecordStore
from rotation.tls_policy import cipher_key_check
from rotation.validate import validate_issued

log = logging.getLogger(__name__)

ProgressCallback = Callable[[RotationRecord, Step], None]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RotationOptions:
    trigger: Trigger | str = Trigger.CLI
    dry_run: bool = False
    issuer: Issuer | None = None  # overrides the inventory's issuer (e.g. --cert-file/--key-file)
    verify_deadline: timedelta | None = None  # default: the cluster's verify_deadline
    poll_interval: float = 0.5
    push_attempts: int = 3
    push_backoff: float = 0.5
    rotation_id: str | None = None
    clock: Callable[[], datetime] = utc_now
    progress: ProgressCallback | None = None
    extra_checks: tuple = field(default_factory=tuple)
    requested_by: str | None = None
    # Where the previous pair is kept (encrypted) so a redelivered task can still roll back.
    secrets: SecretStore | None = None


@dataclass
class _Previous:
    """The pair to restore on rollback. The key is a SecretPEM and never leaves memory."""

    certificate: str
    key: SecretPEM
    fingerprint: str


class _Run:
    """One rotation in progress: the record, its steps and the session it works through."""

    def __init__(
        self, session: ClusterSession, record: RotationRecord, options: RotationOptions, store: RecordStore
    ) -> None:
        self.session = session
        self.record = record
        self.options = options
        self.store = store
        self.log = logging.LoggerAdapter(log, {"rotation_id": record.id, "cluster": record.cluster,
                                               "cert_name": record.cert_name})

    def step(self, name: str) -> _StepScope:
        return _StepScope(self, name)

    def notify(self, step: Step) -> None:
        self.store.save(self.record)  # followers (CLI --wait, chat) see each step as it happens
        if self.options.progress:
            self.options.progress(self.record, step)


class _StepScope:
    def __init__(self, run: _Run, name: str) -> None:
        self.run = run
        self.step = Step(name=name, started_at=run.options.clock())

    def __enter__(self) -> Step:
        self.run.record.steps.append(self.step)
        self.run.notify(self.step)
        self.run.log.info("step %s started", self.step.name)
        return self.step

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        self.step.finished_at = self.run.options.clock()
        if self.step.ok is None:
            self.step.ok = exc is None
        if exc is not None and not self.step.detail:
            self.step.detail = str(exc)
        self.run.log.info("step %s %s %s", self.step.name, "ok" if self.step.ok else "failed", self.step.detail)
        self.run.notify(self.step)


def _fingerprint_of(pem: str, where: str) -> str:
    return certs.fingerprint(certs.load_certificates(pem, where=where)[0])


def _previous_pair(session: ClusterSession, cert_name: CertName) -> _Previous:
    pair = session.client.certificates().get(str(cert_name))
    if pair is None or not pair.key:
        raise RotationError(
            f"{session.name}/{cert_name}: GET /v1/cluster/certificates has no current certificate and key; "
            "without them a rollback would be impossible, so nothing is pushed (does the user have the admin role?)"
        )
    return _Previous(pair.certificate, pair.key, _fingerprint_of(pair.certificate, f"{session.name} {cert_name}_cert"))


def _previous_key(record: RotationRecord) -> str:
    return f"previous/{record.cluster}/{record.cert_name}"


def _keep_previous(options: RotationOptions, record: RotationRecord, previous: _Previous) -> None:
    if options.secrets is not None:
        blob = {"certificate": previous.certificate, "key": previous.key.reveal(), "fingerprint": previous.fingerprint}
        options.secrets.put(_previous_key(record), json.dumps(blob).encode(), ttl_seconds=30 * 86400)


def _kept_previous(options: RotationOptions, record: RotationRecord) -> _Previous | None:
    blob = options.secrets.get(_previous_key(record)) if options.secrets is not None else None
    if blob is None:
        return None
    data = json.loads(blob)
    return _Previous(data["certificate"], SecretPEM(data["key"]), data["fingerprint"])


def _resume_after_push(run: _Run, name: CertName) -> None:
    """A worker died after pushing: finish if the new certificate is served everywhere, else roll back."""
    record = run.record
    deadline = run.options.verify_deadline or run.session.settings.verify_deadline
    with run.step("resume") as step:
        step.detail = "previous attempt was interrupted after the push"
        previous = _kept_previous(run.options, record)
        if previous is None or previous.fingerprint != record.old_fingerprint:
            raise RotationError(f"{record.cluster}/{name}: cannot resume rotation {record.id}: "
                                "the previous certificate is not in the secret store")
    if record.new_fingerprint:
        try:
            with run.step("verify") as step:
                served = _wait_until_served(run, name, record.new_fingerprint, timedelta(seconds=0))
                step.detail = f"{len(served)} endpoint(s) already serve the new certificate"
        except VerificationError as exc:
            record.error = f"interrupted rotation not complete: {exc.message}"
        else:
            _finish(record, served, Outcome.VERIFIED)
            return
    _roll_back(run, name, previous, deadline)


def _push(run: _Run, cert_name: CertName, certificate: str, key: SecretPEM) -> str:
    """PUT the pair, retrying what RS calls temporary (409, 5xx, resets) a few times."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return run.session.client.update_certificate(
                str(cert_name), certificate, key, bulk=run.session.uses_bulk_update
            )
        except ClusterAPIError as exc:
            if not exc.retryable or attempt >= run.options.push_attempts:
                raise
            run.log.warning("push attempt %d failed (%s); retrying", attempt, exc)
            time.sleep(run.options.push_backoff * 2 ** (attempt - 1))


def _wait_until_served(run: _Run, cert_name: CertName, fingerprint: str, deadline: timedelta) -> list[ServedCert]:
    """Fresh handshakes (and the REST copy) until everything shows ``fingerprint`` or time runs out."""
    end = time.monotonic() + deadline.total_seconds()
    while True:
        served = run.session.served(cert_name)
        if cert_name.is_served:
            served.append(run.session.rest_copy(cert_name))
        lagging = [s for s in served if s.fingerprint != fingerprint]
        if not lagging:
            return served
        if time.monotonic() >= end:
            where = ", ".join(
                f"{s.endpoint.label}: {s.error or 'still ' + certs.short_fingerprint(s.fingerprint or '')}"
                for s in lagging[:5]
            )
            raise VerificationError(
                f"{run.record.cluster}/{cert_name}: {certs.short_fingerprint(fingerprint)} not served everywhere "
                f"after {deadline.total_seconds():g}s ({len(lagging)} endpoint(s) lagging: {where})"
            )
        time.sleep(run.options.poll_interval)


def _node_map(served: list[ServedCert]) -> dict[str, str | None]:
    return {s.endpoint.label: s.fingerprint for s in served}


def _finish(record: RotationRecord, served: list[ServedCert], outcome: Outcome) -> None:
    """Record what every endpoint serves at the end, and the outcome that proved it."""
    for label, fingerprint in _node_map(served).items():
        record.nodes.setdefault(label, {"before": None})["after"] = fingerprint
    record.outcome = outcome


def rotate(
    inventory: Inventory,
    session: ClusterSession,
    cert_name: CertName | str,
    *,
    store: RecordStore,
    locker: Locker,
    options: RotationOptions | None = None,
) -> RotationRecord:
    """Rotate one certificate of one cluster. Always returns the record; never raises for a
    failed rotation (the record's outcome and error say what happened)."""
    options = options or RotationOptions()
    plan = inventory.plan(session.name, cert_name)
    name = plan.cert_name
    existing = store.get(options.rotation_id) if options.rotation_id else None
    if existing is not None and existing.outcome is not Outcome.IN_PROGRESS:
        return existing  # a redelivered task whose rotation already ended: nothing to do
    record = existing or RotationRecord(
        id=options.rotation_id or uuid.uuid4().hex[:12],
        cluster=session.name,
        cert_name=str(name),
        trigger=str(options.trigger),
        started_at=options.clock(),
        requested_by=options.requested_by,
    )
    run = _Run(session, record, options, store)
    try:
        owner = f"rotation {record.id} ({record.trigger})"
        with rotation_context(record.id, session.name, str(name)), locker.hold(session.name, str(name), owner):
            store.save(record)
            if existing is not None and any(s.name == "push" for s in existing.steps):
                _resume_after_push(run, name)
            else:
                _rotate_locked(run, inventory, plan)
    except RotationInProgress:
        if existing is not None:
            raise  # our own earlier attempt still holds the lease: the caller retries later
        record.outcome = Outcome.REFUSED
        record.error = f"{session.name}/{name}: a rotation is already in progress"
    except RotationError as exc:
        record.error = record.error or exc.message
        record.retryable = exc.retryable
        record.retry_after = exc.retry_after
        record.problem = getattr(exc, "problem", None)
        if record.outcome is Outcome.IN_PROGRESS:
            record.outcome = Outcome.REFUSED if not any(s.name == "push" for s in record.steps) else Outcome.FAILED
    finally:
        record.finished_at = options.clock()
        if record.outcome is Outcome.IN_PROGRESS:
            record.outcome = Outcome.FAILED
            record.error = record.error or "rotation interrupted"
        store.save(record)
        run.log.info("rotation finished: %s %s", record.outcome, record.error or "")
    return record


def _rotate_locked(run: _Run, inventory: Inventory, plan: CertPlan) -> None:
    session, record, options = run.session, run.record, run.options
    name: CertName = plan.cert_name
    deadline = options.verify_deadline or session.settings.verify_deadline

    with run.step("read") as step:
        view = session.view(refresh=True)
        down = view.down_nodes()
        if down:
            raise RotationError(
                f"{session.name}: node(s) {', '.join(str(n.uid) for n in down)} are {down[0].status}; "
                "a rotation now would leave them stale, so nothing is pushed"
            )
        before = session.served(name)
        unreachable = [s for s in before if not s.ok]
        if unreachable:
            raise RotationError(
                f"{session.name}/{name}: cannot read the current certificate from "
                + ", ".join(f"{s.endpoint.label} ({s.error})" for s in unreachable[:5])
                + "; nothing is pushed"
            )
        previous = _previous_pair(session, name)
        _keep_previous(options, record, previous)
        record.old_fingerprint = previous.fingerprint
        record.nodes = {label: {"before": fp, "after": None} for label, fp in _node_map(before).items()}
        step.detail = f"{len(before)} endpoint(s), RS {view.version or 'unknown'}, current " + \
            certs.short_fingerprint(previous.fingerprint)

    issuer = options.issuer or (
        build_issuer(inventory, plan.issuer, secret_store=options.secrets) if plan.issuer else None
    )
    if issuer is None:
        raise RotationError(f"{session.name}/{name}: no issuer configured (set clusters.{session.name}.issuer)")
    record.issuer = issuer.name
    request = plan.request(default_key_type(inventory, plan.issuer))

    with run.step("issue") as step:
        issued: IssuedCert = issuer.issue(request)
        step.detail = f"from {issuer.name}"

    with run.step("validate") as step:
        anchors = [c for pem in issuer.trust_anchors() for c in certs.load_certificates(pem, where=issuer.name)]
        bundle = validate_issued(issued, request, now=options.clock(), trust_anchors=anchors,
                                 extra_checks=(*options.extra_checks, cipher_key_check(session.view().tls_fields)))
        record.new_fingerprint = bundle.fingerprint
        record.new_not_after = bundle.not_after
        step.detail = f"{certs.short_fingerprint(bundle.fingerprint)} valid until {bundle.not_after:%Y-%m-%d %H:%M}Z"

    if options.dry_run:
        record.outcome = Outcome.DRY_RUN
        return

    if name is CertName.API:
        # The REST endpoint itself is about to change certificate: trust its issuer first.
        session.client.trust([*issuer.trust_anchors(), issued.chain_pem])

    with run.step("push") as step:
        try:
            step.detail = "via " + _push(run, name, issued.fullchain_pem, issued.key_pem)
        except ClusterAPIError as exc:
            step.ok, step.detail = False, exc.message
            if exc.status is not None and not exc.retryable:
                raise  # RS refused the certificate: nothing changed
            # 409/5xx/timeouts may have applied part of it: whatever is served must be reconciled.
            record.error = exc.message
            _roll_back(run, name, previous, deadline)
            return

    try:
        with run.step("verify") as step:
            served = _wait_until_served(run, name, bundle.fingerprint, deadline)
            step.detail = f"{len(served)} endpoint(s) serve {certs.short_fingerprint(bundle.fingerprint)}"
    except VerificationError as exc:
        record.error = exc.message
        _roll_back(run, name, previous, deadline)
        return
    _finish(record, served, Outcome.VERIFIED)


def _roll_back(run: _Run, name: CertName, previous: _Previous, deadline: timedelta) -> None:
    record = run.record
    with run.step("rollback") as step:
        try:
            _push(run, name, previous.certificate, previous.key)
            step.detail = f"pushed back {certs.short_fingerprint(previous.fingerprint)}"
        except ClusterAPIError as exc:
            step.ok, step.detail = False, exc.message
            record.outcome = Outcome.FAILED
            record.error = f"{record.error}; rollback push failed: {exc.message}"
            return
    try:
        with run.step("verify-rollback") as step:
            served = _wait_until_served(run, name, previous.fingerprint, deadline)
            step.detail = f"{len(served)} endpoint(s) serve the previous certificate again"
    except VerificationError as exc:
        record.outcome = Outcome.FAILED
        record.error = f"{record.error}; rollback not verified: {exc.message}"
        return
    _finish(record, served, Outcome.ROLLED_BACK)
