"""The scan: what every managed certificate of a cluster looks like right now, and whether it is due.

One probe batch per cluster: all endpoints of all certificates are handshaken concurrently
under the cluster's cap (never one task or one loop iteration per endpoint). ``cluster_states``
reads and judges (also what `check` shows); ``scan_cluster`` is beat's: it also stores what each
node serves and decides, per certificate, whether to rotate it (``core.renewal.decide``: served
state, renewal window with the CA's ARI window, backoff, clock).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography import x509

from rotation.adapters.cluster import ClusterSession
from rotation.adapters.targets import read_targets
from rotation.config import Inventory
from rotation.core import certs
from rotation.core.budget import IssuanceBudget
from rotation.core.clock import Clock
from rotation.core.errors import RotationError, RotationInProgress
from rotation.core.model import CertName, Outcome, ServedCert, Trigger
from rotation.core.renewal import Decision, Health, RenewalWindow, Verdict, ari_recheck_in, decide, judge
from rotation.core.targets import database_key, database_target
from rotation.usecases.held_check import held_certificates

if TYPE_CHECKING:  # annotations only: `rotation check` needs neither the service's state nor its queue
    from rotation.adapters.state.base import SavedScan
    from rotation.usecases.context import ServiceContext
    from rotation.usecases.queue import RotationQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CertState:
    cluster: str
    cert_name: CertName | str  # a slot, "rest_client" or "db:<key>" (rotation.core.targets)
    verdict: Verdict
    served: tuple[ServedCert, ...]

    @property
    def health(self) -> Health:
        return self.verdict.health


def cluster_states(
    inventory: Inventory,
    session: ClusterSession,
    clock: Clock,
    cert_names: Sequence[CertName | str] | None = None,
) -> list[CertState]:
    """Probe every managed certificate once and judge it. REST errors propagate; handshake
    failures become UNREACHABLE verdicts."""
    names = list(cert_names or inventory.targets(session.name))
    session.view(refresh=True)
    served_by = read_targets(session, names)  # one probe batch for every endpoint of every target
    return judge_states(inventory, session.name, served_by, clock.now())


def judge_states(inventory: Inventory, cluster: str, served_by: dict[CertName | str, list[ServedCert]],
                 moment: datetime) -> list[CertState]:
    """Each target's verdict from what it serves (in ``served_by``'s order)."""
    return [CertState(cluster, name, judge(served, moment, inventory.plan(cluster, name).renew_before), tuple(served))
            for name, served in served_by.items()]


def earliest_expiry(states: Sequence[CertState]) -> dict[str, datetime]:
    """The earliest notAfter each certificate's endpoints (or its REST copy) presented."""
    seen: dict[str, datetime] = {}
    for state in states:
        moments = [s.not_after for s in state.served if s.ok and s.not_after]
        if moments:
            seen[str(state.cert_name)] = min(moments)
    return seen


@dataclass(frozen=True)
class ScanResult:
    cluster: str
    states: list[CertState]
    decisions: dict[CertName | str, Decision]
    warnings: tuple[str, ...] = ()  # about what the cluster holds (held_check): stored for `status`, metrics
    new_warnings: tuple[str, ...] = ()  # the ones the previous scan did not have: notified once
    read_at: datetime | None = None  # when the scan began reading the cluster: what it read is from then on

    @property
    def due(self) -> list[CertName | str]:
        return [name for name, decision in self.decisions.items() if decision.due]

    @property
    def backing_off(self) -> list[CertName | str]:
        return [name for name, decision in self.decisions.items() if decision.backing_off]


def fleet_scan(ctx: ServiceContext) -> list[str]:
    """The clusters a fleet scan covers (beat's, every interval): the inventory's. A cluster taken out of it
    leaves `status` and the metrics here, once per fleet scan (not per cluster: that reads every state of
    the fleet), or its expiry alerts would fire for ever. Its records, history and counters stay."""
    clusters = list(ctx.inventory().clusters)
    forgotten = ctx.state.forget_clusters(clusters)
    if forgotten:
        log.info("forgot the state of %s: no longer in the inventory", ", ".join(forgotten))
    return clusters


def scan_cluster(ctx: ServiceContext, cluster: str) -> ScanResult:
    """Probe every managed certificate of one cluster, store what each node serves, and decide which
    certificates to rotate now."""
    inventory = ctx.inventory()
    read_at = ctx.clock.now()
    try:
        with ctx.sessions.open(inventory, cluster) as session:
            states = cluster_states(inventory, session, ctx.clock)
            held = held_certificates(inventory, session, ctx.clock.now(), earliest_expiry(states), prefer_health=True)
            locks = _database_locks(session, states)
    except RotationError as exc:
        ctx.state.record_scan(cluster, ok=False, error=exc.message)
        raise
    aliases = _database_aliases(locks)
    moment = ctx.clock.now()
    next_attempts, new_warnings, kept_ari, installed = _save_scan(ctx, cluster, states, moment,
                                                                  {w.key: w.text for w in held.found}, locks)
    decisions = {}
    for state in states:
        plan = inventory.plan(cluster, state.cert_name)
        window = RenewalWindow(plan.renew_before, _ari_due_at(ctx, inventory, plan.issuer, state, moment,
                                                                 kept_ari.get(str(state.cert_name))),
                               installed.get(str(state.cert_name)))
        next_attempt = next_attempts.get(str(state.cert_name))
        alias = aliases.get(str(state.cert_name))
        if alias:  # one certificate, one lock (DatabaseTarget.lock_name): one rotation
            decisions[state.cert_name] = Decision(state.verdict, due=False, reason=f"the same database as {alias}")
            continue
        decision = decide(state.served, window, moment, datetime.fromisoformat(next_attempt) if next_attempt else None)
        if not decision.backing_off and decision.reason != state.verdict.reason:  # `status` says what the scan does
            ctx.state.update_state(cluster, str(state.cert_name), reason=decision.reason)
        decisions[state.cert_name] = decision
    return ScanResult(cluster, states, decisions, tuple(held.warnings), tuple(new_warnings), read_at)


def _database_locks(session: ClusterSession, states: Sequence[CertState]) -> dict[str, str]:
    """``db:<key>`` targets -> the name their rotations lock (``DatabaseTarget.lock_name``: RS's name for the
    database), kept with the scan so `status` finds the holder of ``db:7``'s lock without a REST call."""
    locks = {}
    for state in states:
        key = database_key(str(state.cert_name))
        database = session.view().database(key) if key else None
        if database is not None:
            locks[str(state.cert_name)] = database_target(database.name)
    return locks


def _database_aliases(locks: dict[str, str]) -> dict[str, str]:
    """``db:<key>`` targets naming a database an earlier one names (``db:orders`` and ``db:7``, its uid: one
    lock): each -> that earlier one, which alone is decided."""
    first: dict[str, str] = {}
    return {target: first[lock] for target, lock in locks.items() if first.setdefault(lock, target) != target}


def scan_and_queue(ctx: ServiceContext, cluster: str, queue: RotationQueue,
                   uniform: Callable[[float, float], float] = random.uniform,
                   notify: Callable[[str], object] | None = None) -> dict[str, Any]:
    """Beat's scan of one cluster: what it serves is stored, and the due certificates are queued,
    spread over ``ROTATION_JITTER`` (a fleet's renewals do not all start at once). A warning the
    previous scan did not have goes to ``notify`` (the notification channel) once."""
    result = scan_cluster(ctx, cluster)
    for warning in result.new_warnings:
        log.warning("%s", warning)
        if notify is not None:
            notify(warning)
    jitter = ctx.settings.rotation_jitter.total_seconds()
    queued, busy, waiting, meanwhile = [], [], [], []
    budgets = _Budgets(ctx)
    for cert_name in result.due:
        if _rotated_since(ctx, cluster, cert_name, result.read_at):
            meanwhile.append(str(cert_name))
            continue
        if not budgets.room(cluster, cert_name):
            waiting.append(str(cert_name))
            continue
        try:
            queued.append(queue.submit(cluster, str(cert_name), trigger=Trigger.BEAT, countdown=uniform(0, jitter)))
        except RotationInProgress:
            busy.append(str(cert_name))
            budgets.give_back(cluster, cert_name)  # queued before, or running: it took (or waits for) its own
    if result.backing_off:
        log.info("%s: backing off %s after failures", cluster, ", ".join(map(str, result.backing_off)))
    if meanwhile:
        log.info("%s: %s rotated while this scan read the cluster: not queued again (the next scan reads them)",
                 cluster, ", ".join(meanwhile))
    if waiting:
        log.info("%s: %s wait for their issuer's budget (%s); the next scan queues them",
                 cluster, ", ".join(waiting), "; ".join(budgets.why) or "this scan queued the orders left")
    return {"cluster": cluster, "queued": queued, "in_progress": busy,
            "backing_off": [str(c) for c in result.backing_off], "waiting_for_budget": waiting,
            "rotated_meanwhile": meanwhile, "warnings": len(result.warnings)}


def _rotated_since(ctx: ServiceContext, cluster: str, cert_name: CertName | str, moment: datetime | None) -> bool:
    """A rotation of it was verified after the scan began reading the cluster: the scan found it due from
    what the cluster served before, and would queue a second rotation of a certificate renewed moments ago
    (another CA order) once that rotation's claim is gone. Its lock does not stop that: the rotation ended."""
    if moment is None:
        return False
    latest = ctx.state.history(cluster, str(cert_name), 1)
    return bool(latest) and latest[0].outcome is Outcome.VERIFIED and not latest[0].dry_run \
        and latest[0].finished_at is not None and latest[0].finished_at >= moment


class _Budgets:
    """How many rotations one scan may queue per issuer budget (``core.budget``): none while it is spent
    or the CA paused it, else at most the orders left. A hint read once per scan, not a reservation: the
    rotation takes its order itself right before ordering, and one that finds none waits (retried)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.inventory = ctx.inventory()
        self.now = ctx.clock.now()
        self.left: dict[str, int | None] = {}  # per budget key: orders this scan may still queue (None: any)
        self.why: list[str] = []

    def _budget(self, cluster: str, cert_name: CertName | str) -> IssuanceBudget | None:
        issuer = self.inventory.plan(cluster, cert_name).issuer
        return self.inventory.issuers[issuer].issuance_budget(issuer) if issuer else None

    def give_back(self, cluster: str, cert_name: CertName | str) -> None:
        budget = self._budget(cluster, cert_name)
        left = self.left.get(budget.key) if budget is not None else None
        if budget is not None and left is not None:
            self.left[budget.key] = left + 1

    def room(self, cluster: str, cert_name: CertName | str) -> bool:
        budget = self._budget(cluster, cert_name)
        if budget is None:
            return True
        issuer = budget.issuer
        if budget.key not in self.left:
            try:
                use = self.ctx.state.budget_use(budget, self.now)
            except RotationError as exc:  # the rotation itself will ask the store again
                log.warning("issuer %s: its budget could not be read: %s", issuer, exc.message)
                use = None
            blocked = use.blocked_until(self.now) if use is not None else None
            self.left[budget.key] = 0 if blocked else (use.left if use is not None else None)
            if blocked and use is not None:
                self.why.append(use.refusal(self.now).message)
        left = self.left[budget.key]
        if left is None:
            return True
        if left <= 0:
            return False
        self.left[budget.key] = left - 1
        return True


def _ari_due_at(ctx: ServiceContext, inventory: Inventory, issuer_name: str | None,
                state: CertState, now: datetime, kept: Any) -> datetime | None:
    """The CA's renewal window for what is served (ACME Renewal Information), when its issuer offers one.
    What the CA said is kept in the certificate's state (``ari``) and reused until it may be asked again
    (its Retry-After, bounded: ``ari_recheck_in``), so scans every few minutes do not hammer it; ``kept`` is
    that field as the scan read it (``SavedScan.ari``, no round trip of its own)."""
    served = next((s for s in state.served if s.ok and s.leaf_der), None)
    if not issuer_name or served is None or served.leaf_der is None:
        return None
    cluster, cert_name = state.cluster, str(state.cert_name)
    kept_due = None
    if isinstance(kept, dict) and kept.get("for") == served.fingerprint:  # another certificate: ask anew
        try:
            kept_due = datetime.fromisoformat(kept["due_at"]) if kept.get("due_at") else None
            if datetime.fromisoformat(kept["ask_again"]) > now:
                return kept_due
        except (KeyError, TypeError, ValueError):
            kept_due = None  # unreadable: ask again
    try:
        issuer = ctx.issuers.issuer(inventory, issuer_name)
        info = issuer.renewal_info(certs.cert_to_pem(x509.load_der_x509_certificate(served.leaf_der)))
    except RotationError as exc:
        log.warning("renewal info for %s/%s unavailable: %s", cluster, cert_name, exc.message)
        # not asked again before its Retry-After either; the window it gave before still holds
        wait = timedelta(seconds=exc.retry_after) if exc.retry_after else None
        _keep_ari(ctx, state, served.fingerprint, kept_due, now + ari_recheck_in(wait))
        return kept_due
    if info is None:
        return None
    _keep_ari(ctx, state, served.fingerprint, info.due_at, now + ari_recheck_in(info.ask_again_in))
    return info.due_at


def _keep_ari(ctx: ServiceContext, state: CertState, fingerprint: str | None, due_at: datetime | None,
              ask_again: datetime) -> None:
    ctx.state.update_state(state.cluster, str(state.cert_name), ari={
        "for": fingerprint, "due_at": due_at.isoformat() if due_at else None, "ask_again": ask_again.isoformat()})


def _save_scan(ctx: ServiceContext, cluster: str, states: list[CertState], now: datetime,
               warnings: dict[str, str], locks: dict[str, str]) -> SavedScan:
    """What every node serves, per certificate, for `status` and the metrics, and the scan's warnings
    (one Redis round trip)."""
    return ctx.state.save_scan(cluster, {
        str(state.cert_name): {
            "served": {s.endpoint.label: s.fingerprint for s in state.served},
            "not_after": {s.endpoint.label: s.not_after.isoformat() for s in state.served if s.not_after},
            "health": str(state.health),
            "reason": state.verdict.reason,
            "last_scan": now.isoformat(),
            **({"lock_name": locks[str(state.cert_name)]} if str(state.cert_name) in locks else {}),
        }
        for state in states
    }, warnings)


__all__ = ["CertState", "ScanResult", "cluster_states", "earliest_expiry", "fleet_scan", "judge_states",
           "scan_and_queue", "scan_cluster"]
