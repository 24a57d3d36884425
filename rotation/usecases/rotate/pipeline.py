"""rotate(): the only module that knows the order of the steps.

read what is served -> issue -> validate -> push -> verify on every node -> (roll back).

The same steps for every *target* (``rotation.adapters.targets``): a cluster slot, a database's own
certificate, the tool's own client certificate. A target says how it is read, pushed, observed and
rolled back; the order, fencing, recovery, companions and the record are this module's and
``recovery``'s, whatever the target.

Safety rules: nothing is pushed before validation passes (the chain leads to an anchor the
operator configured; an ``api`` certificate is one the REST client will still trust) and before
the previous certificate and key are in hand and kept for a rollback; only the lock's holder
pushes (fencing token checked before every PUT); after a push, success means every endpoint
presents the new fingerprint on a fresh handshake; every other exit path rolls back or records
what each endpoint serves (``rotation.usecases.rotate.recovery``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
import ssl
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from cryptography import x509

from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.adapters.cluster import ClusterSession
from rotation.adapters.issuers.base import Issuer
from rotation.adapters.issuers.factory import IssuerFactory
from rotation.adapters.logs import rotation_context
from rotation.adapters.state import Lease, ServiceState
from rotation.adapters.targets import Target, open_target
from rotation.adapters.tls.trust import handshake_error
from rotation.config import CertPlan, Inventory
from rotation.config.files import read_file
from rotation.core import certs
from rotation.core.budget import DEFAULT_PAUSE, IssuanceBudget, moment_text
from rotation.core.durations import format_duration
from rotation.core.errors import (
    BudgetSpent,
    IssuerError,
    RotationError,
    RotationInProgress,
    SharedLockBusy,
    StoreUnavailable,
    Superseded,
)
from rotation.core.model import CertName, IssuedCert, Outcome, RotationRecord, new_rotation_id
from rotation.core.targets import DATABASE_PREFIX, POLICY_APPLY_OWNER, shared_locks
from rotation.core.text import shortened
from rotation.core.validate import (
    ExtraCheck,
    ParsedBundle,
    check_public_lifetime,
    profile_warnings,
    strict_profile_check,
    validate_issued,
)
from rotation.usecases.rotate import companions
from rotation.usecases.rotate.recovery import push_and_verify, resume_after_push, resume_undo
from rotation.usecases.rotate.run import OriginalPair, RotationOptions, Run, describe

log = logging.getLogger(__name__)


def rotate(
    inventory: Inventory,
    session: ClusterSession,
    cert_name: CertName | str,
    *,
    state: ServiceState,
    issuers: IssuerFactory,
    options: RotationOptions | None = None,
) -> RotationRecord:
    """Rotate one certificate of one cluster. Always returns the record; never raises for a
    failed rotation (the record's outcome and error say what happened). Raises StoreUnavailable when
    the store cannot be reached before anything was pushed, and re-raises signals (after settling)."""
    options = options or RotationOptions()
    plan = inventory.plan(session.name, cert_name)
    name = plan.cert_name
    existing = state.get(options.rotation_id) if options.rotation_id else None
    if existing is not None and existing.outcome is not Outcome.IN_PROGRESS and not _undo_left(existing):
        return existing  # a redelivered task whose rotation already ended: nothing to do
    record = existing or _new_record(session.name, name, options)
    run = Run(session, record, options, state, open_target(session, name, options.secrets))
    ends = True
    try:
        owner = f"rotation {record.id} ({record.trigger})"
        identities, run.cluster_info = _identities(session, resuming=bool(existing and existing.steps))
        with rotation_context(record.id, session.name, str(name)), \
                _hold(state, identities, run.target, owner) as lease:
            run.lease = lease
            if existing is not None and existing.outcome is not Outcome.IN_PROGRESS:
                resume_undo(run)
            elif existing is not None and existing.pushed:
                run.save()
                resume_after_push(run)
            else:
                _rotate_locked(run, inventory, plan, issuers, state)
    except RotationInProgress as exc:
        if existing is not None and existing.steps:
            ends = False
            raise  # our own earlier attempt still holds the lease: the caller retries later
        # A record with no step yet is only the request's (saved when it was queued): another rotation holds it.
        record.outcome, record.error, record.blocked_by = Outcome.REFUSED, exc.message, exc.message
        record.retryable = exc.retryable  # another certificate's rotation (SharedLockBusy): the task retries
    except StoreUnavailable as exc:
        # Before a push nothing started: the caller says the store is unreachable. A record already
        # saved or journaled (a step began) must still end, or it would stay `in_progress` when Redis returns.
        ends = bool(record.steps)
        if not record.pushed:  # a peer change whose undo failed has already made it `failed`
            if record.outcome is Outcome.IN_PROGRESS:
                record.outcome = Outcome.REFUSED
            record.error = record.error or exc.message
        raise
    except BaseException as exc:
        _note_failure(run, exc)
        if not isinstance(exc, Exception):
            raise  # a signal (SIGTERM, Ctrl-C); after a push recovery settled first
    finally:
        if ends:
            _end(run)
    return record


class _Leases:
    """The leases of a rotation that holds more than its own lock (``shared_locks``): fenced by all of them."""

    def __init__(self, own: Lease, others: list[Lease]) -> None:
        self.leases = [own, *others]
        self.token = own.token

    @property
    def lost(self) -> bool:
        return any(lease.lost for lease in self.leases)

    def check(self) -> None:
        for lease in self.leases:
            lease.check()


def _identities(session: ClusterSession, *, resuming: bool) -> tuple[list[str], dict[str, Any] | None]:
    """The cluster's lock identities: its REST URL's ``host:port``, and the name the cluster gives itself
    (``GET /v1/cluster`` ``name``: its FQDN, set once, read-only), so the same cluster reached by another URL
    (another node's address, an address for the FQDN, two inventories) is still one lock per certificate.
    Two clusters that claim one FQDN only wait for each other. With them, the ``GET /v1/cluster`` answer read
    for the name (None: the view's, which a caller read), which the read step reuses under the lock: it names
    the cluster and its ports, which our own rotations never change."""
    identities = [session.settings.identity]
    info: dict[str, Any] | None = None
    try:
        # the view (when a caller read it) holds the same answer: ``fqdn`` is RS's ``name``
        said: object
        if session.view_read:
            said = session.view().fqdn
        else:
            info = session.client.cluster_info()
            said = info.get("name")
    except RotationError as exc:
        if not resuming:
            raise  # nothing started: refused, retried like any unreachable cluster
        # an earlier attempt's recovery must not wait for the API (it may be what failed): its URL's lock
        log.warning("%s: the cluster's name could not be read (%s); locked by its URL only", session.name,
                    exc.message)
        return identities, None
    name = said if isinstance(said, str) and said.strip(" .") else session.settings.fqdn
    return [*identities, "rs:" + name.strip().rstrip(".").lower()], info


@contextlib.contextmanager
def _hold(state: ServiceState, identities: list[str], target: Target, owner: str) -> Iterator[Lease]:
    """The target's lock under each of the cluster's identities, then the locks it shares endpoints with. Each
    is tried, never waited for (so no order can deadlock): the target's own first, so that a second rotation of
    the same certificate is a plain RotationInProgress, and another certificate's rotation holding a shared lock
    is a SharedLockBusy."""
    with contextlib.ExitStack() as stack:
        own: list[Lease] = []
        for identity in identities:
            try:
                own.append(stack.enter_context(state.hold(identity, target.lock_name(), owner)))
            except RotationInProgress as exc:
                # proxy's lock, held by a database rotation as the lock it shares (its holder names it so),
                # or the lock a `policy apply` holds while it changes what this certificate's listeners accept:
                # not a duplicate, so a queued rotation is tried again shortly
                if f" of {DATABASE_PREFIX}" in exc.message or POLICY_APPLY_OWNER in exc.message:
                    raise SharedLockBusy(exc.message) from None
                raise
        try:
            others = [*own[1:], *(stack.enter_context(state.hold(identity, name, f"{owner} of {target.cert_name}"))
                                   for identity in identities for name in shared_locks(str(target.cert_name)))]
        except RotationInProgress as exc:
            raise SharedLockBusy(exc.message) from None
        yield _Leases(own[0], others) if others else own[0]


@contextlib.contextmanager
def hold_certificates(state: ServiceState, session: ClusterSession, cert_names: list[str], owner: str
                      ) -> Iterator[Lease]:
    """The locks of ``cert_names`` under each of the cluster's identities, as their rotations take them, for a
    change outside the pipeline that those rotations must not overlap (``rotation policy apply``): each tried,
    never waited for; RotationInProgress names the holder. The lease fences by all of them."""
    identities, _ = _identities(session, resuming=False)
    with contextlib.ExitStack() as stack:
        leases = [stack.enter_context(state.hold(identity, name, owner))
                  for name in cert_names for identity in identities]
        yield _Leases(leases[0], leases[1:])


def _undo_left(record: RotationRecord) -> bool:
    """The certificate is back (rolled back, refused) but the worker died before the record ended: peer
    changes it had not undone yet are still the rotation's to undo."""
    return (record.finished_at is None and record.outcome in (Outcome.ROLLED_BACK, Outcome.REFUSED)
            and any(not entry.get("undone") for entry in record.companions))


def _new_record(cluster: str, name: CertName | str, options: RotationOptions) -> RotationRecord:
    return RotationRecord(id=options.rotation_id or new_rotation_id(), cluster=cluster, cert_name=str(name),
                          trigger=str(options.trigger), started_at=(options.clock or SYSTEM_CLOCK).now(),
                          requested_by=options.requested_by, dry_run=options.dry_run)


def _end(run: Run) -> None:
    record = run.record
    record.finished_at = run.clock.now()
    if record.outcome is Outcome.IN_PROGRESS:
        record.outcome = Outcome.FAILED
        record.error = record.error or "rotation interrupted"
    run.save()
    run.log.info("rotation finished: %s %s", record.outcome, record.error or "")


def _note_failure(run: Run, exc: BaseException) -> None:
    """What an exception that left the pipeline means for the record (after a push, recovery settled)."""
    record = run.record
    if isinstance(exc, Superseded):  # lost the lease before pushing anything: the cluster is untouched
        record.outcome, record.error = Outcome.SUPERSEDED, exc.message
    elif isinstance(exc, RotationError):
        if isinstance(exc, BudgetSpent):  # nothing was ordered: waiting for the issuer is no failure of its own
            record.blocked_by = exc.message
        record.error = record.error or exc.message
        record.retryable, record.retry_after = exc.retryable, exc.retry_after
        record.problem = exc.problem if isinstance(exc, IssuerError) else None
        if record.outcome is Outcome.IN_PROGRESS:
            record.outcome = Outcome.FAILED if record.pushed else Outcome.REFUSED
    else:  # a bug (recorded, not raised) or a signal (re-raised by the caller)
        if isinstance(exc, Exception):
            run.log.exception("rotation failed unexpectedly")
            record.outcome = Outcome.FAILED
        record.error = record.error or describe(exc)


def _read(run: Run) -> OriginalPair:
    """What is served now, and the pair a failure restores: the current one, or the original an
    unfinished earlier rotation of this certificate left bound."""
    session, record, name = run.session, run.record, run.cert_name
    with run.step("read") as step:
        view = session.view(refresh=not run.options.view_read, info=run.cluster_info)
        down = view.down_nodes()
        if down:
            raise RotationError(
                f"{session.name}: node(s) {', '.join(str(n.uid) for n in down)} are {down[0].status}; "
                "a rotation now would leave them stale, so nothing is pushed"
            )
        before = run.target.served()
        unreachable = [s for s in before if not s.ok]
        if unreachable:
            raise RotationError(
                f"{session.name}/{name}: cannot read the current certificate from "
                + ", ".join(f"{s.endpoint.label} ({s.error})" for s in unreachable[:5])
                + "; nothing is pushed"
            )
        current = run.target.current()
        adopted = run.originals.adopt({s.fingerprint for s in before} | {current.fingerprint})
        original = adopted[0] if adopted else current
        record.old_fingerprint = original.fingerprint
        record.nodes = {s.endpoint.label: {"before": s.fingerprint, "after": None} for s in before}
        step.detail = f"{len(before)} endpoint(s), RS {view.version or 'unknown'}, current " + \
            certs.short_fingerprint(current.fingerprint)
        if adopted:
            step.detail += (f"; rotation {adopted[1]} left this certificate unfinished: its original "
                            f"{certs.short_fingerprint(original.fingerprint)} is what a failure restores")
            _end_abandoned(run, adopted[1])
    return original


def _end_abandoned(run: Run, rotation_id: str) -> None:
    """The unfinished rotation whose original this one adopted no longer runs (this one holds the lock):
    end its record, or it shows `in_progress` for good (a CLI killed after its push is never resumed)."""
    if rotation_id == run.record.id:
        return
    try:
        left = run.store.get(rotation_id)
        if left is None:
            return
        # Its peer changes go with its original: a failure of this rotation restores that original, so it
        # undoes them too, after its own (newest first), else a peer keeps trusting what the dead one pushed.
        # Also when an earlier taker ended its record: that one never settled (the pair is still kept).
        left_over = [dict(entry, from_rotation=rotation_id) for entry in left.companions if not entry.get("undone")]
        run.record.companions[:0] = left_over
        if left.outcome is not Outcome.IN_PROGRESS:
            return
        left.outcome, left.finished_at = Outcome.FAILED, run.clock.now()
        left.error = f"{left.error or 'stopped after its push'}; rotation {run.record.id} took over the certificate" \
            + (f" and its {len(left_over)} peer change(s) not undone" if left_over else "")
        run.store.save(left)
    except RotationError as exc:  # the store is away: that record stays as it was, nothing else depends on it
        run.log.warning("rotation %s: its record could not be ended: %s", rotation_id, exc.message)


def _rotate_locked(run: Run, inventory: Inventory, plan: CertPlan, issuers: IssuerFactory,
                   state: ServiceState) -> None:
    session, record, options, target = run.session, run.record, run.options, run.target
    name = plan.cert_name
    original = _read(run)

    issuer = options.issuer or (
        issuers.issuer(inventory, plan.issuer) if plan.issuer else None
    )
    if issuer is None:
        raise RotationError(f"{session.name}/{name}: no issuer configured (set clusters.{session.name}.issuer)")
    record.issuer = issuer.name
    # the certificate served now (not the cluster's proxy a database fell back to): an ACME CA with ARI
    # exempts a renewal in its window that names it (rs-8x-and-public-cas-2026.md §2, RFC 9773 §5)
    request = dataclasses.replace(plan.request(), replaces=None if original.fallback else original.certificate)
    # A companion that refuses the whole plan (peers whose links could not be read...) does so before the
    # issuer is asked: an ACME order costs a rate-limited issuance, again at every retry of the refusal.
    companion_checks = companions.checks(run)
    # the fleet's budget of orders for this CA account (core.budget): not for a pair brought along (--cert-file)
    budget = None if options.issuer or not plan.issuer else inventory.issuers[plan.issuer].issuance_budget(plan.issuer)

    with run.step("issue") as step:
        order_id = ""
        if budget is not None:  # taken last, right before the order: every refusal above cost none
            order_id = _take_budget(run, state, budget)
        try:
            issued: IssuedCert = issuer.issue(request)
        except IssuerError as exc:
            if budget is not None and exc.rate_limited:
                _pause_issuer(run, state, budget, exc)
            if budget is not None and not exc.ordered:
                _return_order(run, state, budget, order_id)
            raise
        step.detail = f"from {issuer.name}"

    # Without companions (whose checks may ask the cluster or its peers) validation is local and never
    # waits: its start is saved with the next step's.
    with run.step("validate", save=bool(run.companions)) as step:
        anchors, public = _anchors(run, issuer)
        checks: list[ExtraCheck] = [*options.extra_checks, *target.checks()]
        if public:
            checks += [_publicly_trusted, check_public_lifetime]
        checks += companion_checks
        strict, fqdn = session.settings.strict_profile, session.settings.fqdn
        if strict:
            checks.append(strict_profile_check(fqdn))
        bundle = validate_issued(issued, request, now=run.clock.now(), trust_anchors=anchors,
                                 require_anchor=not public, extra_checks=checks, checks=target.validation)
        if not strict:
            record.warnings += profile_warnings(bundle, request, fqdn)
        record.new_fingerprint = bundle.fingerprint
        record.new_not_after = bundle.not_after
        step.detail = f"{certs.short_fingerprint(bundle.fingerprint)} valid until {bundle.not_after:%Y-%m-%d %H:%M}Z"

    if {n["before"] for n in record.nodes.values()} == {bundle.fingerprint} == {original.fingerprint}:
        # e.g. a `files` issuer whose files were not renewed yet: the same pair pushed again at every scan
        # changes nothing (and, verified, would never back off)
        raise RotationError(f"{session.name}/{name}: every endpoint already serves "
                            f"{certs.short_fingerprint(bundle.fingerprint)} (valid until "
                            f"{bundle.not_after:%Y-%m-%d %H:%M}Z), what issuer {issuer.name!r} handed out: nothing "
                            "newer to push; renew what the issuer holds")
    lines = companions.plan(run, bundle)
    if lines:
        with run.step("plan") as step:
            step.detail = "; ".join(lines)
    if options.dry_run:
        record.outcome = Outcome.DRY_RUN
        return

    target.before_push([*issuer.trust_anchors(), issued.chain_pem])
    push_and_verify(run, issued, bundle, original)


def _take_budget(run: Run, state: ServiceState, budget: IssuanceBudget) -> str:
    """One order of the issuer's budget (its id), or BudgetSpent (retryable, never the certificate's failure)."""
    now = run.clock.now()
    # one id per order: a task delivered again (its worker died) runs under the same rotation id and orders again
    order_id = f"{run.record.id}:{secrets.token_hex(4)}"
    use = state.take_order(budget, order_id, now)
    if not use.taken:
        raise use.refusal(now, retried=run.options.retried)
    if use.left is not None:
        run.log.info("issuer %s: %d of %d orders left in the %s window", budget.issuer, use.left, use.orders,
                     format_duration(budget.per))
    return order_id


def _return_order(run: Run, state: ServiceState, budget: IssuanceBudget, order_id: str) -> None:
    """The CA was not reached (directory, account): nothing was ordered, so nothing is counted. Else an outage
    of minutes, each due certificate tried and retried, spends the fleet's orders for the window after it."""
    try:
        state.return_order(budget, order_id)
    except RotationError as failure:  # counted: the window gives it back later
        run.log.warning("issuer %s: its unused order could not be given back: %s", budget.issuer, failure.message)


def _pause_issuer(run: Run, state: ServiceState, budget: IssuanceBudget, exc: IssuerError) -> None:
    """The CA said rateLimited: every rotation of this issuer waits until its Retry-After instead of asking."""
    until = run.clock.now() + (timedelta(seconds=exc.retry_after) if exc.retry_after else DEFAULT_PAUSE)
    problem = exc.problem or {}
    reason = shortened(str(problem.get("detail") or problem.get("type") or "HTTP 429"))
    try:
        state.pause_issuer(budget, until, reason)
    except RotationError as failure:  # the rotation's own outcome stands; the next one asks and is told again
        run.log.warning("issuer %s: its pause could not be stored: %s", budget.issuer, failure.message)
        return
    run.log.warning("issuer %s: the CA answered rateLimited; no order for it before %s", budget.issuer,
                    moment_text(until))


def _anchors(run: Run, issuer: Issuer) -> tuple[list[x509.Certificate], bool]:
    """Trust anchors the operator configured (the issuer's, ``--trust``, the cluster's ``verify``
    bundle), and whether the system's roots anchor the chain instead: an ACME issuer without
    ``trust_roots`` issues from a public CA."""
    found = [c for pem in (*issuer.trust_anchors(), *run.options.trust)
             for c in certs.load_certificates(pem, where=f"trust anchors of {issuer.name}")]
    if not found and issuer.public_roots:
        return [], True
    for path in run.session.settings.verify_paths:
        found += certs.load_certificates(read_file(path, what="verify bundle"), where=str(path))
    return found, False


def _publicly_trusted(bundle: ParsedBundle, request: object) -> list[str]:
    context = ssl.create_default_context()
    context.check_hostname = False  # SANs are checked against every host by validate
    chain, key = certs.certs_to_pem(bundle.certificates), certs.private_key_to_pem(bundle.key)
    error = handshake_error(context, chain, key, None)
    return [] if error is None else [f"the chain does not lead to a root the system trusts ({error})"]
