"""The service's state on one host without Redis (``ServiceState``): files and ``fcntl`` locks.

``<dir>/history.jsonl``   records, append-only (the last line of an id wins)
``<dir>/locks/``          one ``flock`` per (cluster identity, certificate): released by the kernel if we die
``<dir>/state/*.json``    per-certificate state, scans, counters, pending claims, inventory notes, beat's lease,
                          issuance budgets (each issuer's recent orders and the CA's pause):
                          small JSON documents, each read and rewritten under its own ``flock``
``<dir>/secrets/``        encrypted blobs (``LocalSecretStore``)

Locks are keyed by the cluster's identity (its REST API's host and port), never by the inventory's
name for it, so two inventories (or two folders) cannot rotate one cluster at once. There is no
webhook without Redis, so the chat audit trail is empty here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
from collections.abc import Collection, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rotation.adapters.secrets import LocalSecretStore, SecretBox, SecretStore
from rotation.adapters.state import base
from rotation.adapters.state.base import Lease, decode_value, encode_fields, rotation_counts
from rotation.adapters.state.local_watch import LocalChanges
from rotation.core.budget import BudgetUse, IssuanceBudget, moment, window_use
from rotation.core.clock import Clock
from rotation.core.errors import RotationInProgress, StoreUnavailable
from rotation.core.model import RotationRecord


class KernelLease:
    """An ``flock`` cannot be lost while its process lives (a pause keeps it): nothing to fence."""

    token: int | None = None
    lost = False

    def check(self) -> None:
        return None


def lock_file_name(cluster: str, cert_name: str) -> str:
    """A file name for (cluster identity, certificate): ``host:port`` made safe for any file system."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{cluster}.{cert_name}") + ".lock"


def unwritable(folder: Path, exc: OSError) -> StoreUnavailable:
    """The state folder refuses a write (permissions, read-only mount, full disk): one line naming it."""
    return StoreUnavailable(f"{folder}: the local state cannot be written ({exc.strerror or exc}): "
                            "check ROTATION_STATE_DIR")


class _Document:
    """One JSON document read and rewritten under its own ``flock`` (atomic replace on write)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _locked(self, kind: int) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            if kind == fcntl.LOCK_SH:  # a folder we may only read: writes replace files whole, read unlocked
                yield
                return
            raise unwritable(self.path.parent, exc) from exc
        try:
            fcntl.flock(fd, kind)
            yield
        finally:
            os.close(fd)

    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreUnavailable(f"{self.path}: unreadable ({exc})") from exc

    def read(self) -> dict[str, Any]:
        with self._locked(fcntl.LOCK_SH):
            return self._load()

    @contextlib.contextmanager
    def change(self) -> Iterator[dict[str, Any]]:
        """The document to change in place; written back when the block ends without an error."""
        with self._locked(fcntl.LOCK_EX):
            data = self._load()
            yield data
            tmp = self.path.with_suffix(".tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(data, handle, sort_keys=True)
                os.replace(tmp, self.path)
            except OSError as exc:
                raise unwritable(self.path.parent, exc) from exc


class LocalState:
    """``rotation.adapters.state.base.ServiceState`` in ``directory`` (see the module's docstring)."""

    def __init__(self, directory: Path, clock: Clock, service_locks: base.Locker | None = None) -> None:
        self.directory = directory
        self.clock = clock
        self.service_locks = service_locks  # the service's locks too (its Redis): one lock domain with its workers
        self.path = directory / "history.jsonl"
        self._states = _Document(directory / "state" / "certificates.json")
        self._scans = _Document(directory / "state" / "scans.json")
        self._stats = _Document(directory / "state" / "stats.json")
        self._pending = _Document(directory / "state" / "pending.json")
        self._notes = _Document(directory / "state" / "inventory.json")
        self._budgets = _Document(directory / "state" / "budgets.json")

    @property
    def local_key_dir(self) -> Path:
        return self.directory

    def ping(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"{self.directory}: cannot create the state folder ({exc.strerror})") from exc

    # --- records ---------------------------------------------------------------------------
    def save(self, record: RotationRecord) -> None:
        """Append the record; StoreUnavailable when it cannot be written (a full disk): the port's error,
        which a rotation after its push logs and goes on from (verify or roll back)."""
        line = json.dumps(record.to_dict(), sort_keys=True) + "\n"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                handle.write(line)
        except OSError as exc:
            raise StoreUnavailable(f"{self.path}: the record could not be written ({exc.strerror or exc})") from exc

    @contextlib.contextmanager
    def watch(self) -> Iterator[LocalChanges]:
        """Hear of every record save and marker change from now on (a short poll: ``local_watch``)."""
        changes = LocalChanges(self.path, self._pending.path)
        try:
            yield changes
        finally:
            changes.close()

    def get(self, rotation_id: str) -> RotationRecord | None:
        return self._latest().get(rotation_id)

    def history(
        self, cluster: str | None = None, cert_name: str | None = None, limit: int = 50
    ) -> list[RotationRecord]:
        records = [
            r for r in self._latest().values()
            if (cluster is None or r.cluster == cluster) and (cert_name is None or r.cert_name == cert_name)
        ]
        records.sort(key=lambda r: r.started_at, reverse=True)
        return records[:limit]

    def _latest(self) -> dict[str, RotationRecord]:
        latest: dict[str, RotationRecord] = {}
        if not self.path.exists():
            return latest
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    record = RotationRecord.from_dict(json.loads(line))
                except (ValueError, KeyError):
                    continue  # a torn last line after a crash must not hide the rest
                latest[record.id] = record
        return latest

    # --- locks and pending claims ----------------------------------------------------------
    @contextlib.contextmanager
    def hold(self, cluster: str, cert_name: str, owner: str) -> Iterator[Lease]:
        locks = self.directory / "locks"
        try:
            locks.mkdir(parents=True, exist_ok=True)
            fd = os.open(locks / lock_file_name(cluster, cert_name), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise unwritable(locks, exc) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                raise RotationInProgress(
                    f"{cluster}/{cert_name}: a rotation is already in progress ({holder})"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, owner.encode(), 0)
            if self.service_locks is None:
                yield KernelLease()
            else:
                with self.service_locks.hold(cluster, cert_name, owner) as lease:
                    yield lease
        finally:
            os.close(fd)

    def lock_holders(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        holders = {}
        for cluster, cert_name in pairs:
            path = self.directory / "locks" / lock_file_name(cluster, cert_name)
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # taken: nobody holds it
            except BlockingIOError:
                holders[(cluster, cert_name)] = os.pread(fd, 200, 0).decode(errors="replace").strip()
            finally:
                os.close(fd)
        return holders

    def claim_pending(self, cluster: str, cert_name: str, rotation_id: str, ttl_seconds: int) -> str | None:
        now = self.clock.now().timestamp()
        with self._pending.change() as pending:
            held = pending.get(f"{cluster}:{cert_name}")
            if held and held["expires"] > now:
                return str(held["id"])
            pending[f"{cluster}:{cert_name}"] = {"id": rotation_id, "expires": now + ttl_seconds}
        return None

    def move_pending(self, cluster: str, cert_name: str, old_id: str, new_id: str) -> None:
        with self._pending.change() as pending:
            held = pending.get(f"{cluster}:{cert_name}")
            if held and held["id"] == old_id:
                held["id"] = new_id  # the expiry stays

    def release_pending(self, cluster: str, cert_name: str, rotation_id: str) -> None:
        with self._pending.change() as pending:
            held = pending.get(f"{cluster}:{cert_name}")
            if held and held["id"] == rotation_id:
                del pending[f"{cluster}:{cert_name}"]

    def pending(self) -> dict[tuple[str, str], str]:
        now = self.clock.now().timestamp()
        return {_pair(member): str(held["id"]) for member, held in sorted(self._pending.read().items())
                if held["expires"] > now}

    # --- per-certificate state and backoff -------------------------------------------------
    def update_state(self, cluster: str, cert_name: str, **fields: Any) -> None:
        encoded = encode_fields(fields)
        if encoded:
            with self._states.change() as states:
                states.setdefault(f"{cluster}:{cert_name}", {}).update(encoded)

    def clear_state_fields(self, cluster: str, cert_name: str, *names: str) -> None:
        if names:
            with self._states.change() as states:
                for name in names:
                    states.get(f"{cluster}:{cert_name}", {}).pop(name, None)

    def state(self, cluster: str, cert_name: str) -> dict[str, Any]:
        raw = self._states.read().get(f"{cluster}:{cert_name}", {})
        return {k: decode_value(v) for k, v in raw.items()}

    def all_states(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {_pair(member): {k: decode_value(v) for k, v in raw.items()}
                for member, raw in sorted(self._states.read().items()) if raw}

    def clear_backoff(self, cluster: str, cert_name: str) -> dict[str, Any]:
        with self._states.change() as states:
            state = states.setdefault(f"{cluster}:{cert_name}", {})
            cleared = {"failures": int(state.get("failures") or 0), "next_attempt": state.pop("next_attempt", None),
                       "last_error": state.pop("last_error", None)}
            state["failures"] = "0"
        return cleared

    # --- scans -----------------------------------------------------------------------------
    def save_scan(self, cluster: str, states: dict[str, dict[str, Any]],
                  warnings: dict[str, str] | None = None) -> base.SavedScan:
        with self._states.change() as stored:
            before = {name: stored.get(f"{cluster}:{name}", {}) for name in states}
            next_attempts = {name: fields.get("next_attempt") for name, fields in before.items()}
            ari = {name: decode_value(fields["ari"]) for name, fields in before.items() if fields.get("ari")}
            installed = {name: fields["intended"] for name, fields in before.items() if fields.get("intended")}
            for name, fields in states.items():
                stored.setdefault(f"{cluster}:{name}", {}).update(encode_fields(fields))
        self._save_scan_fields(cluster, {"last_success": self.clock.now().isoformat(), "last_error": ""})
        return base.SavedScan(next_attempts, self.save_scan_warnings(cluster, warnings) if warnings is not None else [],
                              ari, installed)

    def record_scan(self, cluster: str, *, ok: bool, error: str | None = None) -> None:
        now = self.clock.now().isoformat()
        fields = {"last_success": now, "last_error": ""} if ok else {"last_failure": now, "last_error": error or ""}
        self._save_scan_fields(cluster, fields)

    def record_policy_audit(self, cluster: str, *, drift: int, errors: int, summary: str) -> None:
        self._save_scan_fields(cluster, {"policy_audit": self.clock.now().isoformat(), "policy_drift": str(drift),
                                         "policy_errors": str(errors), "policy_summary": summary})

    def _save_scan_fields(self, cluster: str, fields: dict[str, str]) -> None:
        with self._scans.change() as scans:
            scans.setdefault(cluster, {}).update(fields)

    def scans(self) -> dict[str, dict[str, str]]:
        return {cluster: fields for cluster, fields in sorted(self._scans.read().items()) if fields}

    def forget_clusters(self, keep: Collection[str]) -> list[str]:
        kept = set(keep)
        with self._states.change() as states:
            members = [m for m in states if _pair(m)[0] not in kept]
            for member in members:
                del states[member]
        with self._scans.change() as scans:
            scanned = [c for c in scans if c not in kept]
            for cluster in scanned:
                del scans[cluster]
        return sorted({_pair(m)[0] for m in members} | set(scanned))

    def save_scan_warnings(self, cluster: str, warnings: dict[str, str]) -> list[str]:
        """Read the keys stored before and store the new ones under one lock: of two scans of a cluster at
        once, only one hears of a new warning."""
        with self._scans.change() as scans:
            fields = scans.setdefault(cluster, {})
            before = fields.get("warning_keys")
            fields.update(base.warning_fields(warnings))
        return base.new_warnings(before, warnings)

    # --- issuance budgets (one host: a file under its own flock, as Redis's script across hosts) ----
    def take_order(self, budget: IssuanceBudget, order_id: str, now: datetime) -> BudgetUse:
        with self._budgets.change() as budgets:
            entry = budgets.setdefault(budget.key, {})
            entry.update(issuer=budget.issuer, shown=budget.shown, orders=budget.orders,
                         per=budget.per.total_seconds())
            orders = {k: t for k, t in (entry.get("orders_at") or {}).items()
                      if t > now.timestamp() - entry["per"]}
            use = _budget_use(entry, orders, now)
            if use.blocked_until(now) is None:
                if budget.orders is not None:
                    orders[order_id] = now.timestamp()
                use = dataclasses.replace(_budget_use(entry, orders, now), taken=True)
            entry["orders_at"] = orders
        return use

    def budget_use(self, budget: IssuanceBudget, now: datetime) -> BudgetUse:
        entry = dict(self._budgets.read().get(budget.key) or {})
        entry.update(issuer=budget.issuer, shown=budget.shown, orders=budget.orders, per=budget.per.total_seconds())
        return _budget_use(entry, entry.get("orders_at") or {}, now)

    def return_order(self, budget: IssuanceBudget, order_id: str) -> None:
        with self._budgets.change() as budgets:
            (budgets.get(budget.key) or {}).get("orders_at", {}).pop(order_id, None)

    def pause_issuer(self, budget: IssuanceBudget, until: datetime, reason: str) -> None:
        with self._budgets.change() as budgets:
            entry = budgets.setdefault(budget.key, {"issuer": budget.issuer, "shown": budget.shown})
            if until.timestamp() > (entry.get("paused_until") or 0):
                entry.update(paused_until=until.timestamp(), paused_reason=reason)

    def issuer_budgets(self, now: datetime) -> list[BudgetUse]:
        return [_budget_use(entry, entry.get("orders_at") or {}, now)
                for _, entry in sorted(self._budgets.read().items())]

    # --- counters, notes, the chat audit, secrets ------------------------------------------
    def count_rotation(self, record: RotationRecord) -> None:
        counts = rotation_counts(record)
        if counts:
            with self._stats.change() as stats:
                for name, amount in counts.items():
                    stats[name] = stats.get(name, 0) + amount

    def note_rotation(self, record: RotationRecord, fields: dict[str, Any], clear: tuple[str, ...] = ()) -> None:
        self.count_rotation(record)
        self.update_state(record.cluster, record.cert_name, **fields)
        self.clear_state_fields(record.cluster, record.cert_name, *clear)

    def stats(self) -> dict[str, str]:
        return {name: str(value) for name, value in self._stats.read().items()}

    def note_inventory(self, host: str, problem: dict[str, str] | None) -> None:
        with self._notes.change() as notes:
            if problem:
                notes[host] = problem
            else:
                notes.pop(host, None)

    def inventory_problems(self) -> dict[str, dict[str, str]]:
        return {host: note for host, note in sorted(self._notes.read().items()) if note}

    def chat_commands(self, limit: int = 50, cluster: str | None = None) -> list[dict[str, Any]]:
        return []

    def secret_store(self, box: SecretBox) -> SecretStore:
        return LocalSecretStore(self.directory, box)

    # --- the beat schedule's lease ---------------------------------------------------------
    def hold_schedule(self, holder: str, ttl_seconds: float) -> str | None:
        now = self.clock.now().timestamp()
        with _Document(self.directory / "state" / "beat.json").change() as lease:
            if lease.get("holder") not in (None, holder) and lease.get("expires", 0) > now:
                return str(lease["holder"])
            lease.update(holder=holder, expires=now + ttl_seconds)
        return None

    def release_schedule(self, holder: str) -> None:
        with _Document(self.directory / "state" / "beat.json").change() as lease:
            if lease.get("holder") == holder:
                lease.clear()


def _budget_use(entry: dict[str, Any], orders_at: dict[str, float], now: datetime) -> BudgetUse:
    orders, per = entry.get("orders"), float(entry.get("per") or 0)
    live, free = window_use(orders_at.values(), now.timestamp(), orders, per)
    return BudgetUse(issuer=entry.get("issuer", ""), shown=entry.get("shown", ""), orders=orders,
                     per=timedelta(seconds=per), used=len(live), next_free=moment(free),
                     paused_until=moment(entry.get("paused_until")), paused_reason=entry.get("paused_reason", ""))


def _pair(member: str) -> tuple[str, str]:
    cluster, _, cert_name = member.partition(":")
    return cluster, cert_name


__all__ = ["KernelLease", "LocalState", "lock_file_name"]
