"""Use cases shared by the entry points (CLI, Celery tasks, webhook): thin glue over the domain.

``ServiceContext`` (``rotation.context``) picks the storage; ``scan_cluster`` and ``run_rotation``
are what the Celery tasks call, and what ``rotation rotate --inline`` calls in-process.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from rotation.cluster import build_issuer, open_cluster
from rotation.config import Inventory, ServiceSettings
from rotation.context import ServiceContext, inventory_digest, preflight
from rotation.errors import ConfigError, RotationError, RotationInProgress, StoreUnavailable
from rotation.model import CertName, Outcome, RotationRecord, Step, Trigger
from rotation.pipeline import RotationOptions, rotate, utc_now
from rotation.policy import Health
from rotation.run import describe
from rotation.store import RecordStore
from rotation.survey import CertState, survey_cluster

log = logging.getLogger(__name__)


def record_store() -> RecordStore:
    return ServiceContext().store


# --- check -------------------------------------------------------------------------------
@dataclass
class CheckReport:
    states: list[CertState] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def rows(self) -> list[dict[str, Any]]:
        rows = []
        now = utc_now()
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
                    "days_left": f"{left:.1f}" if left is not None else "-",
                    "status": str(state.health),
                    "reason": state.verdict.reason if served.ok else (served.error or ""),
                })
        return rows

    @property
    def exit_code(self) -> int:
        if self.errors:
            return 2
        return max((s.health.severity for s in self.states), default=0)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "errors": self.errors, "exit_code": self.exit_code}


def check_clusters(inventory: Inventory, names: Sequence[str]) -> CheckReport:
    report = CheckReport()
    for name in names:
        try:
            with open_cluster(inventory, name) as session:
                report.states.extend(survey_cluster(inventory, session, utc_now))
        except RotationError as exc:
            report.errors.append(exc.message)
    return report


# --- scan (beat -> one task per cluster) ---------------------------------------------------
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
    issuer = build_issuer(inventory, issuer_name, secret_store=ctx.secrets)
    renewal_due_at = getattr(issuer, "renewal_due_at", None)
    if renewal_due_at is None:
        return False
    from cryptography import x509

    from rotation import certs

    try:
        due_at = renewal_due_at(certs.cert_to_pem(x509.load_der_x509_certificate(served.leaf_der)))
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
    if ctx.redis_store:
        ctx.redis_store.record_scan(cluster, ok=ok, error=error)


def _save_scan(ctx: ServiceContext, cluster: str, states: list[CertState], now: datetime) -> dict[str, str | None]:
    """What every node serves, per certificate, for `status` and the metrics (one Redis round trip)."""
    if ctx.redis_store is None:
        return {}
    return ctx.redis_store.save_scan(cluster, {
        str(state.cert_name): {
            "served": {s.endpoint.label: s.fingerprint for s in state.served},
            "not_after": {s.endpoint.label: s.not_after.isoformat() for s in state.served if s.not_after},
            "health": str(state.health),
            "reason": state.verdict.reason,
            "last_scan": now.isoformat(),
        }
        for state in states
    })


def backoff_delay(failures: int, settings: ServiceSettings, retry_after: float | None = None) -> timedelta:
    """Per-certificate backoff after a final failure: exponential, capped, jittered, and never
    shorter than what the CA or cluster asked for."""
    base = settings.backoff_base * (2 ** max(0, failures - 1))
    delay = min(base, settings.backoff_max)
    delay = delay * random.uniform(0.8, 1.2)
    if retry_after:
        delay = max(delay, timedelta(seconds=retry_after))
    return delay


def note_outcome(ctx: ServiceContext, record: RotationRecord, *, final: bool = True) -> None:
    """After a rotation: metrics counters, last rotation, and the per-certificate backoff. Only real
    failures count (not dry runs, not "already in progress", not superseded); a good result clears it."""
    store = ctx.redis_store
    if store is None:
        return
    store.count_rotation(record)
    fields: dict[str, Any] = {"last_rotation": record.id, "last_outcome": str(record.outcome)}
    if record.outcome in (Outcome.VERIFIED, Outcome.DRY_RUN):
        if record.outcome is Outcome.VERIFIED:
            fields["intended"] = record.new_fingerprint
        store.update_state(record.cluster, record.cert_name, failures=0, **fields)
        store.clear_state_fields(record.cluster, record.cert_name, "next_attempt", "last_error")
        return
    if not final or not record.counts_as_failure:
        store.update_state(record.cluster, record.cert_name, **fields)
        return
    failures = int(store.state(record.cluster, record.cert_name).get("failures") or 0) + 1
    next_attempt = (record.finished_at or utc_now()) + backoff_delay(failures, ctx.settings, record.retry_after)
    fields.update(failures=failures, next_attempt=next_attempt.isoformat(), last_error=record.error or "")
    store.update_state(record.cluster, record.cert_name, **fields)


def clear_backoff(ctx: ServiceContext, cluster: str, cert_name: str) -> dict[str, Any]:
    """`rotation retry`: forget the failures of one certificate so the next scan may rotate it."""
    plan = ctx.inventory().plan(cluster, cert_name)  # ConfigError for names the inventory does not know
    if ctx.redis_store is None:
        raise ConfigError("backoff lives in the service's Redis (ROTATION_STORE=redis)")
    return ctx.redis_store.clear_backoff(cluster, str(plan.cert_name))


# --- TLS policy audit (beat, nightly) -----------------------------------------------------------
def audit_policy(ctx: ServiceContext, cluster: str) -> Any:
    """Audit one cluster's TLS versions and ciphers by handshakes; keep the drift count for the metrics."""
    from rotation.policy_service import audit_cluster

    report = audit_cluster(ctx.inventory(), cluster)
    if ctx.redis_store is not None:
        ctx.redis_store.record_policy_audit(cluster, drift=len(report.drift), errors=len(report.errors),
                                            summary=report.summary())
    return report


# --- rotations -------------------------------------------------------------------------------
def run_rotation(
    ctx: ServiceContext,
    cluster: str,
    cert_name: str,
    *,
    rotation_id: str | None = None,
    trigger: Trigger | str = Trigger.CLI,
    requested_by: str | None = None,
    options: RotationOptions | None = None,
    inventory: str | None = None,
) -> RotationRecord:
    """One rotation with the context's store, lock and secret store. Whatever happens, the rotation's
    record ends (a broken inventory, a missing password or key, a bug: ``failed`` with the reason),
    except when our own earlier delivery still holds the lock (RotationInProgress: retry later).
    ``inventory`` is the digest of the inventory the request was made with: another one is refused."""
    options = options or RotationOptions()
    options.rotation_id = rotation_id or options.rotation_id
    options.trigger = trigger
    options.requested_by = requested_by
    try:
        loaded = ctx.inventory()
        if inventory and inventory_digest(loaded) != inventory:
            raise ConfigError(
                f"this worker's inventory ({loaded.source}, digest {inventory_digest(loaded)}) is not the one the "
                f"rotation was requested with (digest {inventory}): point ROTATION_CONFIG of the workers and the "
                "command at the same file, or run it with --inline"
            )
        options.secrets = ctx.secrets
        with open_cluster(loaded, cluster) as session:
            return rotate(loaded, session, cert_name, store=ctx.store, locker=ctx.locker, options=options)
    except RotationInProgress:
        raise
    except Exception as exc:
        return _ended_before_start(ctx, cluster, cert_name, options, exc)


def _ended_before_start(ctx: ServiceContext, cluster: str, cert_name: str, options: RotationOptions,
                        exc: Exception) -> RotationRecord:
    """The rotation could not start: end its record ``failed`` with the reason (saved if the store can)."""
    if not isinstance(exc, RotationError):
        log.exception("rotation %s of %s/%s failed unexpectedly", options.rotation_id, cluster, cert_name)
    record = None
    with contextlib.suppress(RotationError):
        record = ctx.store.get(options.rotation_id) if options.rotation_id else None
    if record is not None and record.outcome is not Outcome.IN_PROGRESS:
        return record
    record = record or RotationRecord(id=options.rotation_id or uuid.uuid4().hex[:12], cluster=cluster,
                                      cert_name=cert_name, trigger=str(options.trigger), started_at=utc_now(),
                                      requested_by=options.requested_by, dry_run=options.dry_run)
    record.outcome, record.error, record.finished_at = Outcome.FAILED, describe(exc), utc_now()
    record.retryable = isinstance(exc, StoreUnavailable)
    try:
        ctx.store.save(record)
    except RotationError as failure:
        log.error("rotation %s: record not saved: %s", record.id, failure.message)
    return record


def rotate_inline(
    inventory: Inventory, cluster: str, cert_names: Sequence[str], options: RotationOptions,
    ctx: ServiceContext | None = None,
) -> list[RotationRecord]:
    """Run the pipeline in this process, one certificate after the other."""
    ctx = ctx or ServiceContext()
    options.secrets = ctx.secrets  # the original pair is kept (encrypted) whatever the store
    with open_cluster(inventory, cluster) as session:
        records = []
        for name in cert_names:
            record = rotate(inventory, session, name, store=ctx.store, locker=ctx.locker, options=options)
            try:
                note_outcome(ctx, record)
            except StoreUnavailable as exc:  # the record is journaled; the result still stands
                log.warning("rotation %s: outcome not counted: %s", record.id, exc.message)
            records.append(record)
        return records


@dataclass(frozen=True)
class Claim:
    """(cluster, certificate) reserved for one rotation id: its pending marker is ours until it ends."""

    cluster: str
    cert_name: str
    rotation_id: str

    def in_progress(self, holder: str) -> RotationInProgress:
        """The refusal when ``holder`` has (cluster, certificate) already."""
        return RotationInProgress(f"{self.cluster}/{self.cert_name}: a rotation is already in progress ({holder})")


class RotationQueue(Protocol):
    """What the CLI and the webhook need from the queue (implemented in workers/, with Celery)."""

    ctx: ServiceContext  # whose inventory names the rotations, whose store holds their records

    def submit(self, cluster: str, cert_name: str, *, trigger: Trigger | str = Trigger.CLI,
               requested_by: str | None = None, reply_to: str | None = None, countdown: float = 0.0) -> str: ...

    def current(self, cluster: str, cert_name: str) -> str | None: ...


def follow(
    store: RecordStore,
    queue: RotationQueue,
    rotation_ids: Sequence[str],
    on_step: Callable[[RotationRecord, Step], None] | None = None,
    *,
    timeout: float = 1800.0,
    poll: float = 0.3,
) -> list[RotationRecord]:
    """Follow queued rotations until each ends (through retries), reporting new steps as they land."""
    current = list(rotation_ids)
    reported: dict[str, int] = {}
    final: dict[int, RotationRecord] = {}
    deadline = time.monotonic() + timeout
    while len(final) < len(current) and time.monotonic() < deadline:
        for index, rotation_id in enumerate(current):
            if index in final:
                continue
            record = store.get(rotation_id)
            if record is None:
                continue
            seen = reported.get(rotation_id, 0)
            for step in record.steps[seen:] if on_step else ():
                on_step(record, step)  # type: ignore[misc]
            reported[rotation_id] = len(record.steps)
            if record.outcome is Outcome.IN_PROGRESS:
                continue
            successor = queue.current(record.cluster, record.cert_name)
            if successor and successor != rotation_id and successor.split(".")[0] == rotation_id.split(".")[0]:
                current[index] = successor  # the task retries under a new id
                continue
            final[index] = record
        time.sleep(poll)
    return [final[i] if i in final else store.get(rid) or _lost(rid) for i, rid in enumerate(current)]


def _lost(rotation_id: str) -> RotationRecord:
    return RotationRecord(id=rotation_id, cluster="?", cert_name="?", trigger="?", started_at=utc_now(),
                          outcome=Outcome.FAILED, error="no record of this rotation")


__all__ = [
    "CheckReport",
    "Claim",
    "RotationQueue",
    "follow",
    "ScanResult",
    "ServiceContext",
    "audit_policy",
    "check_clusters",
    "clear_backoff",
    "inventory_digest",
    "preflight",
    "note_outcome",
    "record_store",
    "rotate_inline",
    "run_rotation",
    "scan_cluster",
]
