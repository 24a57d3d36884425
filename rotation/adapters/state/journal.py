"""Rotation records that could not be written to the service's store, kept on local disk.

When Redis is unreachable while a rotation runs (after a push the rotation must go on: verify,
roll back, record), each save that fails leaves the record here (``<dir>/<id>.json``, 0600, the
last save wins); the next successful save or read of the store writes them back and removes them
(and the store's own thread, once Redis returns: ``RedisState._keep_flushing``).
Records hold fingerprints and steps, never keys.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from rotation.core.model import RotationRecord

log = logging.getLogger(__name__)


class RecordJournal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def keep(self, record: RotationRecord) -> Path:
        """Write ``record`` atomically (a crash leaves the old version or the new one, never half)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(record.id)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record.to_dict(), handle, sort_keys=True)
        os.replace(tmp, path)
        return path

    def drop(self, rotation_id: str) -> None:
        """The store has a newer version of this record: the journaled one must not overwrite it."""
        self._path(rotation_id).unlink(missing_ok=True)

    def has_pending(self) -> bool:
        try:
            with os.scandir(self.directory) as entries:
                return any(entry.name.endswith(".json") for entry in entries)
        except FileNotFoundError:
            return False

    def flush(self, write: Callable[[RotationRecord], None]) -> int:
        """Write every kept record with ``write`` (oldest first) and forget it; returns how many.
        Stops at the first failure of ``write`` (the store is still away): the rest stays kept."""
        paths = sorted(self.directory.glob("*.json"), key=_written_at)
        written = 0
        for path in paths:
            try:
                version = path.stat().st_ino
                record = RotationRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
            except FileNotFoundError:
                continue  # written back meanwhile (another thread or process of this host)
            except (OSError, ValueError, KeyError) as exc:
                log.error("journal %s unreadable (%s): left in place", path, exc)
                continue
            write(record)
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_ino == version:  # a newer save kept meanwhile (a new file) waits for the next
                    path.unlink()
            written += 1
            log.warning("rotation %s: record kept while the store was unreachable written back", record.id)
        return written

    def _path(self, rotation_id: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in rotation_id)
        return self.directory / f"{safe}.json"


def _written_at(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:  # written back meanwhile: skipped by ``flush``
        return 0


__all__ = ["RecordJournal"]
