"""Rotate and record: the one path every rotation takes, whoever asks.

``rotate_and_record`` opens the cluster's session (from the context's pool), runs the pipeline,
and records the outcome: the metrics' counters, the certificate's last rotation and, after a
final failure, its backoff. The CLI (``--inline``), the Celery task and chat's dry runs all call
it; only the task layer retries, from what it returns (``Rotated.retry_id``, ``core.retry``).

A rotation asked for with an id (queued, or a chat dry run) always ends its record, even when it
cannot start (a broken inventory, a missing password or key, a bug: ``failed`` with the reason),
except when our own earlier delivery still holds the lock (RotationInProgress: retry later). One
asked for here and now (the CLI) raises instead, and the CLI says what is wrong (exit 2).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, replace
from typing import Any

from rotation.core import retry
from rotation.core.errors import ConfigError, RotationError, RotationInProgress, StoreUnavailable
from rotation.core.model import CertName, Outcome, RotationRecord, new_rotation_id
from rotation.usecases.context import ServiceContext, inventory_digest
from rotation.usecases.rotate.companion_set import companions_for
from rotation.usecases.rotate.pipeline import rotate
from rotation.usecases.rotate.run import RotationOptions, describe
from rotation.usecases.rotate.target_companions import target_companions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rotated:
    """A rotation's record, and when the task layer is to try it again (never for the CLI or chat)."""

    record: RotationRecord
    retry_id: str | None = None  # the id the retry runs under
    retry_in: float = 0.0  # seconds until then


def rotate_and_record(
    ctx: ServiceContext,
    cluster: str,
    cert_name: str,
    options: RotationOptions | None = None,
    *,
    retries: int | None = None,
    inventory: str | None = None,
) -> Rotated:
    """One rotation of (cluster, certificate), recorded. ``retries``: how many times the task layer
    tried it before (None: it is never retried). ``inventory``: the digest of the inventory the
    rotation was asked with; another one is refused."""
    options = options or RotationOptions()
    if retries is not None and retries < retry.MAX_ROTATION_RETRIES:
        options = replace(options, retried=True)
    record = _rotate(ctx, cluster, cert_name, options, inventory)
    again = retries is not None and retry.should_retry(record, retries)
    _record_outcome(ctx, record, final=not again)
    if retries is None or not again:
        return Rotated(record)
    return Rotated(record, retry.retry_id(record.id, retries), retry.rotation_countdown(retries, record.retry_after))


def _rotate(ctx: ServiceContext, cluster: str, cert_name: str, options: RotationOptions,
            digest: str | None) -> RotationRecord:
    try:
        loaded = ctx.inventory()
        if digest and inventory_digest(loaded) != digest:
            raise ConfigError(
                f"this worker's inventory ({loaded.source}, digest {inventory_digest(loaded)}) is not the one the "
                f"rotation was requested with (digest {digest}): point ROTATION_CONFIG of the workers and the "
                "command at the same file, or run it with --inline"
            )
        options.secrets = ctx.secrets  # the original pair is kept (encrypted) whatever the state
        options.clock = options.clock or ctx.clock
        with ctx.sessions.open(loaded, cluster) as session:
            if not options.companions:  # a test or caller may bring its own; options serve several certificates
                name = loaded.plan(cluster, cert_name).cert_name
                chosen = (companions_for(ctx, loaded, session, name) if isinstance(name, CertName)
                          else target_companions(ctx, loaded, session, name))
                # The session was opened for this rotation: a view a builder read just now is the read step's.
                options = replace(options, companions=chosen, view_read=session.view_read)
            return rotate(loaded, session, cert_name, state=ctx.state, issuers=ctx.issuers, options=options)
    except RotationInProgress:
        raise
    except Exception as exc:
        if options.rotation_id is None:
            raise  # asked here and now: the caller says what is wrong
        return _ended_before_start(ctx, cluster, cert_name, options, exc)


def _ended_before_start(ctx: ServiceContext, cluster: str, cert_name: str, options: RotationOptions,
                        exc: Exception) -> RotationRecord:
    """The rotation could not start: end its record ``failed`` with the reason (saved if the state can)."""
    if not isinstance(exc, RotationError):
        log.exception("rotation %s of %s/%s failed unexpectedly", options.rotation_id, cluster, cert_name)
    record = None
    with contextlib.suppress(RotationError):
        record = ctx.state.get(options.rotation_id) if options.rotation_id else None
    if record is not None and record.outcome is not Outcome.IN_PROGRESS:
        return record
    now = ctx.clock.now()
    record = record or RotationRecord(id=options.rotation_id or new_rotation_id(), cluster=cluster,
                                      cert_name=cert_name, trigger=str(options.trigger), started_at=now,
                                      requested_by=options.requested_by, dry_run=options.dry_run)
    record.outcome, record.error, record.finished_at = Outcome.FAILED, describe(exc), now
    record.retryable = isinstance(exc, StoreUnavailable)
    try:
        ctx.state.save(record)
    except RotationError as failure:
        log.error("rotation %s: record not saved: %s", record.id, failure.message)
    return record


def _record_outcome(ctx: ServiceContext, record: RotationRecord, *, final: bool) -> None:
    """The counters, the last rotation, and the per-certificate backoff. Only real failures count
    (not dry runs, not "already in progress", not superseded); a good result clears the backoff.
    A state that is away is logged: the record itself is journaled and the result stands."""
    try:
        note_outcome(ctx, record, final=final)
    except RotationError as exc:
        log.error("rotation %s: outcome not counted: %s", record.id, exc.message)


def note_outcome(ctx: ServiceContext, record: RotationRecord, *, final: bool = True) -> None:
    state = ctx.state
    fields: dict[str, Any] = {"last_rotation": record.id, "last_outcome": str(record.outcome),
                              "last_warnings": "\n".join(record.warnings)}  # `status` shows them
    if record.outcome in (Outcome.VERIFIED, Outcome.DRY_RUN):
        if record.outcome is Outcome.VERIFIED:
            fields["intended"] = record.new_fingerprint
        state.note_rotation(record, {"failures": 0, **fields}, clear=("next_attempt", "last_error"))
        return
    if not final or not record.counts_as_failure:
        state.note_rotation(record, fields)
        return
    failures = int(state.state(record.cluster, record.cert_name).get("failures") or 0) + 1
    delay = retry.backoff_delay(failures, ctx.settings.backoff_base, ctx.settings.backoff_max, record.retry_after)
    next_attempt = (record.finished_at or ctx.clock.now()) + delay
    fields.update(failures=failures, next_attempt=next_attempt.isoformat(), last_error=record.error or "")
    state.note_rotation(record, fields)


__all__ = ["Rotated", "note_outcome", "rotate_and_record"]
