"""THE state port: everything the service remembers, behind one interface with two implementations.

``ServiceState`` is what the use cases, the queue, the webhook, ``status`` and the metrics talk
to; ``redis.RedisState`` serves the service (every worker, beat and the webhook share it) and
``local.LocalState`` one host without Redis (files and ``fcntl`` locks, the same semantics).
Nothing outside this package knows which one it has: ``rotation.adapters.state.open_state``
picks it once from the settings.

What it holds, by concern:

- records and history: one ``RotationRecord`` per rotation (fingerprints and steps, never keys), and
  ``watch()``: notice of every record save and marker change, so followers wait instead of polling
- one rotation per (cluster identity, certificate): a lock with a lease and a fencing token
- pending claims: the rotation id queued or running per (cluster, certificate)
- per-certificate state: what each node serves, health, last rotation, failures and backoff
- scans: last success or failure per cluster, last TLS policy audit
- issuance budgets: each issuer's recent orders and the CA's pause (``core.budget``)
- counters: rotations by outcome and their durations (the metrics)
- inventory notes: a host whose inventory edit does not load
- the chat audit trail (read here; the webhook appends), and the secret store (encrypted blobs)

Field values of the per-certificate state and of the scans are stored as text (JSON for
anything but a string) and read back decoded: ``encode_fields`` / ``decode_value``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from rotation.adapters.secrets import SecretBox, SecretStore
from rotation.core.budget import BudgetUse, IssuanceBudget
from rotation.core.model import ANY_CHANGE, RotationRecord

# Rotation durations (seconds) the counters bucket, for the metrics' histogram.
DURATION_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, float("inf"))


class SavedScan(NamedTuple):
    """What storing a scan returns (``ServiceState.save_scan``)."""

    next_attempts: dict[str, str | None]  # per certificate, while it backs off after failures
    new_warnings: list[str]  # the warnings' texts the previous scan did not have
    ari: dict[str, Any]  # per certificate, what the CA last said of its renewal (``scan._ari_due_at``), if kept
    installed: dict[str, str]  # per certificate, the fingerprint the last verified rotation installed, if any


class Lease(Protocol):
    """What holding a lock gives a rotation: a fence to check immediately before every PUT."""

    token: int | None  # fencing token (monotonic per cluster and certificate), when the lock has one

    @property
    def lost(self) -> bool:
        """True once another rotation is known to have taken the lock (no round trip)."""
        ...

    def check(self) -> None:
        """Raise Superseded unless this rotation still holds the lock right now."""
        ...


class Changes(Protocol):
    """A subscription to the store's changes of rotation records and rotation markers (pending claims).

    Subscribed when it is made, so nothing that changes after ``watch()`` returned is missed: read,
    then ``wait``. A lost notification only delays a reader until its own bounded timeout."""

    def wait(self, timeout: float) -> set[str]:
        """Block until a record or marker changes, at most ``timeout`` seconds: the ids of the rotations
        whose record or marker changed (``ANY_CHANGE``: something changed, unknown which); empty when
        nothing did."""
        ...

    def close(self) -> None: ...


class RecordStore(Protocol):
    def save(self, record: RotationRecord) -> None: ...

    def watch(self) -> contextlib.AbstractContextManager[Changes]:
        """Hear of every record save and every change of a rotation marker from now on (``Changes``)."""
        ...

    def get(self, rotation_id: str) -> RotationRecord | None: ...

    def history(
        self, cluster: str | None = None, cert_name: str | None = None, limit: int = 50
    ) -> list[RotationRecord]: ...


class Locker(Protocol):
    def hold(self, cluster: str, cert_name: str, owner: str) -> contextlib.AbstractContextManager[Lease]:
        """Hold the lock of (cluster identity, certificate); RotationInProgress when someone else has it."""
        ...


class ServiceState(RecordStore, Locker, Protocol):
    """The whole port (see the module's docstring). Errors reaching the store are StoreUnavailable."""

    @property
    def local_key_dir(self) -> Path | None:
        """Where a secret key may be generated for single-host use; None: it must come from the environment."""
        ...

    def ping(self) -> None: ...

    # --- locks and pending claims ---------------------------------------------------------
    def lock_holders(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Who holds the lock of each (cluster identity, certificate) held now."""
        ...

    def claim_pending(self, cluster: str, cert_name: str, rotation_id: str, ttl_seconds: int) -> str | None:
        """Mark (cluster, cert) as queued; returns the id already holding it, or None if we got it."""
        ...

    def move_pending(self, cluster: str, cert_name: str, old_id: str, new_id: str) -> None:
        """A retry continues under a new id: point the marker at it (only if it is still ours)."""
        ...

    def release_pending(self, cluster: str, cert_name: str, rotation_id: str) -> None: ...

    def pending(self) -> dict[tuple[str, str], str]: ...

    # --- per-certificate state and backoff ------------------------------------------------
    def update_state(self, cluster: str, cert_name: str, **fields: Any) -> None: ...

    def clear_state_fields(self, cluster: str, cert_name: str, *names: str) -> None: ...

    def state(self, cluster: str, cert_name: str) -> dict[str, Any]: ...

    def all_states(self) -> dict[tuple[str, str], dict[str, Any]]: ...

    def clear_backoff(self, cluster: str, cert_name: str) -> dict[str, Any]:
        """Forget the failures of (cluster, cert): the next scan may rotate it. Returns what was cleared."""
        ...

    # --- scans ----------------------------------------------------------------------------
    def save_scan(self, cluster: str, states: dict[str, dict[str, Any]],
                  warnings: dict[str, str] | None = None) -> SavedScan:
        """Store one scan of a cluster; return each certificate's ``next_attempt`` (while it backs off)
        and, with ``warnings``, what :meth:`save_scan_warnings` returns for them (in the same write)."""
        ...

    def record_scan(self, cluster: str, *, ok: bool, error: str | None = None) -> None: ...

    def record_policy_audit(self, cluster: str, *, drift: int, errors: int, summary: str) -> None: ...

    def scans(self) -> dict[str, dict[str, str]]: ...

    def forget_clusters(self, keep: Collection[str]) -> list[str]:
        """Drop the certificate states and scans of every cluster not in ``keep`` (the inventory); the
        clusters dropped. Records, history and counters stay."""
        ...

    def save_scan_warnings(self, cluster: str, warnings: dict[str, str]) -> list[str]:
        """Store a scan's warnings of a cluster (key -> text; `status` and the metrics read them); return the
        texts whose key the previous scan did not have (the notification channel hears of each once)."""
        ...

    # --- issuance budgets (core.budget), shared by every worker ---------------------------
    def take_order(self, budget: IssuanceBudget, order_id: str, now: datetime) -> BudgetUse:
        """Count one order (``order_id``) against ``budget`` at ``now`` if the issuer is not paused and the
        budget has room (``BudgetUse.taken``), atomically across workers; the budget as it is after."""
        ...

    def budget_use(self, budget: IssuanceBudget, now: datetime) -> BudgetUse:
        """The budget at ``now``, nothing counted."""
        ...

    def return_order(self, budget: IssuanceBudget, order_id: str) -> None:
        """The order ``take_order`` counted was never asked for (the CA was not reached): not counted."""
        ...

    def pause_issuer(self, budget: IssuanceBudget, until: datetime, reason: str) -> None:
        """The CA said rateLimited: no order for this issuer before ``until`` (a later pause is kept)."""
        ...

    def issuer_budgets(self, now: datetime) -> list[BudgetUse]:
        """Every issuer budget the store holds (ever taken from or paused), at ``now``."""
        ...

    # --- counters, notes, the chat audit, secrets -----------------------------------------
    def count_rotation(self, record: RotationRecord) -> None: ...

    def note_rotation(self, record: RotationRecord, fields: dict[str, Any], clear: tuple[str, ...] = ()) -> None:
        """A finished attempt in one write: its counters (``count_rotation``), the certificate's state
        ``fields`` (``update_state``) and the fields it no longer has (``clear``)."""
        ...

    def stats(self) -> dict[str, str]: ...

    def note_inventory(self, host: str, problem: dict[str, str] | None) -> None: ...

    def inventory_problems(self) -> dict[str, dict[str, str]]: ...

    def chat_commands(self, limit: int = 50, cluster: str | None = None) -> list[dict[str, Any]]:
        """The chat audit trail, newest first; with ``cluster``, only the commands that named it."""
        ...

    def secret_store(self, box: SecretBox) -> SecretStore: ...

    # --- the beat schedule's lease (one beat runs the schedule; others stand by) -----------
    def hold_schedule(self, holder: str, ttl_seconds: float) -> str | None:
        """Take or renew the schedule's lease for ``ttl_seconds``: None when ``holder`` holds it now,
        else the holder that does (untouched)."""
        ...

    def release_schedule(self, holder: str) -> None:
        """Give the lease up (only if ``holder`` holds it): a standby beat takes over at once."""
        ...


def encode_fields(fields: dict[str, Any]) -> dict[str, str]:
    """Field values as stored: strings as they are, anything else as JSON; None values are left out."""
    return {k: (json.dumps(v) if not isinstance(v, str) else v) for k, v in fields.items() if v is not None}


def decode_value(value: str) -> Any:
    """A stored field value read back: JSON when it parses as JSON, else the string."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def rotation_counts(record: RotationRecord) -> dict[str, int | float]:
    """The counter increments one finished rotation adds: by outcome (whole numbers), and its duration
    (a sum in seconds, a count and the histogram's buckets)."""
    if record.finished_at is None:
        return {}
    seconds = (record.finished_at - record.started_at).total_seconds()
    label = f"{record.cluster}|{record.cert_name}|{record.outcome}"
    counts: dict[str, int | float] = {f"count|{label}": 1, f"duration_sum|{record.outcome}": seconds,
                                      f"duration_count|{record.outcome}": 1}
    counts.update({f"duration_bucket|{record.outcome}|{bound}": 1 for bound in DURATION_BUCKETS if seconds <= bound})
    return counts


def warning_fields(warnings: dict[str, str]) -> dict[str, str]:
    """A scan's warnings (key -> text) as stored in its cluster's scan fields."""
    return {"warnings": "\n".join(warnings.values()), "warning_count": str(len(warnings)),
            "warning_keys": "\n".join(warnings)}


def new_warnings(stored_keys: str | None, warnings: dict[str, str]) -> list[str]:
    """The texts of ``warnings`` whose key is not among ``stored_keys`` (the ``warning_keys`` field the
    previous scan stored)."""
    before = set(filter(None, (stored_keys or "").split("\n")))
    return [text for key, text in warnings.items() if key not in before]


__all__ = ["ANY_CHANGE", "DURATION_BUCKETS", "Changes", "Lease", "Locker", "RecordStore", "SavedScan", "ServiceState",
           "decode_value", "encode_fields", "new_warnings", "rotation_counts", "warning_fields"]
