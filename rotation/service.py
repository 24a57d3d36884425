"""Use cases shared by the entry points (CLI, Celery tasks, webhook): thin glue over the domain.

``ServiceContext`` picks the storage (Redis for the service, local files with
``ROTATION_STORE=local``); ``scan_cluster`` and ``run_rotation`` are what the Celery tasks
call, and what ``rotation rotate --inline`` calls in-process.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rotation.cluster import SessionPool, build_issuer, open_cluster
from rotation.config import Inventory, ServiceSettings, load_inventory, local_state_dir, resolve_config_path
from rotation.errors import RotationError, RotationInProgress
from rotation.model import CertName, Outcome, RotationRecord, Step, Trigger
from rotation.pipeline import RotationOptions, rotate, utc_now
from rotation.policy import Health
from rotation.secrets import LocalSecretStore, SecretBox, SecretStore
from rotation.store import FileLocker, LocalStore, Locker, RecordStore
from rotation.survey import CertState, survey_cluster

if TYPE_CHECKING:
    from rotation.redis_store import RedisStore

log = logging.getLogger(__name__)


class ServiceContext:
    """Storage, locks and secrets for one process, chosen once from ServiceSettings."""

    def __init__(self, settings: ServiceSettings | None = None, config_path: str | None = None) -> None:
        self.settings = settings or ServiceSettings.from_env()
        self.config_path = config_path
        self._inventory_cache: tuple[tuple[Path, int | None], Inventory] | None = None

    def inventory(self) -> Inventory:
        """The inventory, re-read whenever the file changes (edits apply without a restart)."""
        path = resolve_config_path(self.config_path)
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            stamp = None  # let load_inventory say what is wrong
        cached = self._inventory_cache
        if cached is None or cached[0] != (path, stamp) or stamp is None:
            self._inventory_cache = ((path, stamp), load_inventory(path))
        return self._inventory_cache[1]  # type: ignore[index]

    @cached_property
    def sessions(self) -> SessionPool:
        """REST clients reused by this process's scans (a worker scans the same clusters all day)."""
        return SessionPool()

    @cached_property
    def redis(self) -> Any:
        from rotation.redis_store import connect

        return connect(self.settings.redis_url)

    @property
    def uses_redis(self) -> bool:
        return self.settings.store == "redis"

    @cached_property
    def store(self) -> RecordStore:
        if self.uses_redis:
            from rotation.redis_store import RedisStore

            return RedisStore(self.redis)
        return LocalStore(local_state_dir())

    @property
    def redis_store(self) -> RedisStore | None:
        """The Redis store when the service runs with Redis (state, scans, metrics live there)."""
        return self.store if self.uses_redis else None  # type: ignore[return-value]

    @cached_property
    def locker(self) -> Locker:
        if self.uses_redis:
            from rotation.redis_store import RedisLocker

            return RedisLocker(self.redis, self.settings.lock_lease.total_seconds())
        return FileLocker(local_state_dir())

    @cached_property
    def secret_box(self) -> SecretBox:
        """The service's encryption key(s); ConfigError when none is configured."""
        return SecretBox.from_env(state_dir=None if self.uses_redis else local_state_dir())

    @cached_property
    def secrets(self) -> SecretStore:
        if self.uses_redis:
            from rotation.redis_store import RedisSecretStore

            return RedisSecretStore(self.redis, self.secret_box)
        return LocalSecretStore(local_state_dir(), self.secret_box)


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
    """After a rotation: metrics counters, last rotation, and the per-certificate backoff."""
    store = ctx.redis_store
    if store is None:
        return
    store.count_rotation(record)
    fields: dict[str, Any] = {"last_rotation": record.id, "last_outcome": str(record.outcome)}
    if record.outcome is Outcome.VERIFIED:
        fields.update(failures=0, intended=record.new_fingerprint)
        store.update_state(record.cluster, record.cert_name, **fields)
        store.clear_state_fields(record.cluster, record.cert_name, "next_attempt", "last_error")
        return
    if record.outcome is Outcome.DRY_RUN or not final:
        store.update_state(record.cluster, record.cert_name, **fields)
        return
    failures = int(store.state(record.cluster, record.cert_name).get("failures") or 0) + 1
    next_attempt = (record.finished_at or utc_now()) + backoff_delay(failures, ctx.settings, record.retry_after)
    fields.update(failures=failures, next_attempt=next_attempt.isoformat(), last_error=record.error or "")
    store.update_state(record.cluster, record.cert_name, **fields)


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
) -> RotationRecord:
    """One rotation with the context's store, lock and secret store."""
    inventory = ctx.inventory()
    options = options or RotationOptions()
    options.rotation_id = rotation_id or options.rotation_id
    options.trigger = trigger
    options.requested_by = requested_by
    options.secrets = ctx.secrets
    with open_cluster(inventory, cluster) as session:
        return rotate(inventory, session, cert_name, store=ctx.store, locker=ctx.locker, options=options)


def rotate_inline(
    inventory: Inventory, cluster: str, cert_names: Sequence[str], options: RotationOptions,
    ctx: ServiceContext | None = None,
) -> list[RotationRecord]:
    """Run the pipeline in this process, one certificate after the other."""
    ctx = ctx or ServiceContext()
    with open_cluster(inventory, cluster) as session:
        records = []
        for name in cert_names:
            if ctx.uses_redis:
                options.secrets = ctx.secrets
            record = rotate(inventory, session, name, store=ctx.store, locker=ctx.locker, options=options)
            note_outcome(ctx, record)
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
    "note_outcome",
    "record_store",
    "rotate_inline",
    "run_rotation",
    "scan_cluster",
]
