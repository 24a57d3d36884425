"""Where rotation records and per-certificate locks live, behind small protocols.

``LocalStore`` keeps records in a JSON-lines file and locks with ``fcntl`` (one host).
The service replaces both with Redis (see ``rotation.adapters.state.redis``). Locks are keyed by the
cluster's identity (its REST API's host and port, ``ClusterSettings.identity``), never by the
inventory's name for it, so two inventories (or two folders) cannot rotate one cluster at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from rotation.core.errors import RotationInProgress
from rotation.core.model import RotationRecord


class RecordStore(Protocol):
    def save(self, record: RotationRecord) -> None: ...

    def get(self, rotation_id: str) -> RotationRecord | None: ...

    def history(
        self, cluster: str | None = None, cert_name: str | None = None, limit: int = 50
    ) -> list[RotationRecord]: ...


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


class Locker(Protocol):
    def hold(self, cluster: str, cert_name: str, owner: str) -> contextlib.AbstractContextManager[Lease]:
        """Hold the lock of (cluster identity, certificate); RotationInProgress when someone else has it."""
        ...


class KernelLease:
    """An ``flock`` cannot be lost while its process lives (a pause keeps it): nothing to fence."""

    token: int | None = None
    lost = False

    def check(self) -> None:
        return None


class LocalStore:
    """Records in ``<dir>/history.jsonl`` (append-only; the last line of an id wins)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "history.jsonl"

    def save(self, record: RotationRecord) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record.to_dict(), sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.write(line)

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


def lock_file_name(cluster: str, cert_name: str) -> str:
    """A file name for (cluster identity, certificate): ``host:port`` made safe for any file system."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{cluster}.{cert_name}") + ".lock"


class FileLocker:
    """``flock`` on ``<dir>/locks/<identity>.<cert>.lock``: released by the kernel if we die."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory / "locks"

    @contextlib.contextmanager
    def hold(self, cluster: str, cert_name: str, owner: str) -> Iterator[Lease]:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / lock_file_name(cluster, cert_name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
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
            yield KernelLease()
        finally:
            os.close(fd)
