"""Use cases shared by the entry points (CLI, Celery tasks, webhook): thin glue over the domain.

``ServiceContext`` (``rotation.usecases.context``) picks the storage; ``scan_cluster`` and ``run_rotation``
are what the Celery tasks call, and what ``rotation rotate --inline`` calls in-process.
"""

from __future__ import annotations

import contextlib
import logging
import random
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from rotation.adapters.clock import utc_now
from rotation.adapters.cluster import open_cluster
from rotation.config import Inventory, ServiceSettings
from rotation.core.errors import ConfigError, RotationError, RotationInProgress, StoreUnavailable
from rotation.core.model import Outcome, RotationRecord, Trigger
from rotation.usecases.context import ServiceContext, inventory_digest
from rotation.usecases.rotate.pipeline import rotate
from rotation.usecases.rotate.run import RotationOptions, describe

log = logging.getLogger(__name__)


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
    store = ctx.state
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
            return rotate(loaded, session, cert_name, state=ctx.state, options=options)
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
        record = ctx.state.get(options.rotation_id) if options.rotation_id else None
    if record is not None and record.outcome is not Outcome.IN_PROGRESS:
        return record
    record = record or RotationRecord(id=options.rotation_id or uuid.uuid4().hex[:12], cluster=cluster,
                                      cert_name=cert_name, trigger=str(options.trigger), started_at=utc_now(),
                                      requested_by=options.requested_by, dry_run=options.dry_run)
    record.outcome, record.error, record.finished_at = Outcome.FAILED, describe(exc), utc_now()
    record.retryable = isinstance(exc, StoreUnavailable)
    try:
        ctx.state.save(record)
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
            record = rotate(inventory, session, name, state=ctx.state, options=options)
            try:
                note_outcome(ctx, record)
            except StoreUnavailable as exc:  # the record is journaled; the result still stands
                log.warning("rotation %s: outcome not counted: %s", record.id, exc.message)
            records.append(record)
        return records


__all__ = ["backoff_delay", "note_outcome", "rotate_inline", "run_rotation"]
