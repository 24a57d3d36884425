"""Hearing of record and marker changes in the local state: a short poll of two files.

Records are appended to ``history.jsonl`` and pending markers live in ``state/pending.json``
(``local``); a watcher remembers how far it read the first and what the second held, and every
``POLL`` seconds looks at their size and modification time (a ``stat``, no read while nothing
changed). What changed is told by id: the records appended since, the markers that moved or went.
One host, no server to push anything: a poll this short is what waiting costs here.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

POLL = 0.02  # seconds between two looks at the files
MAX_READ = 16 * 1024 * 1024  # bytes of history read at once (what a burst of saves appends)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


class LocalChanges:
    """``rotation.adapters.state.base.Changes`` over the files of one ``LocalState`` folder."""

    def __init__(self, history: Path, pending: Path) -> None:
        self.history, self.pending = history, pending
        self._history_stamp = _stamp(history)
        self._offset = self._history_stamp[1] if self._history_stamp else 0
        self._pending_stamp = _stamp(pending)
        self._markers = self._read_markers()

    def _read_markers(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.pending.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return {}

    def _appended_ids(self) -> set[str]:
        ids: set[str] = set()
        try:
            with open(self.history, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size < self._offset:
                    self._offset = 0  # replaced by a shorter file: read it again
                handle.seek(self._offset)
                chunk = handle.read(min(MAX_READ, size - self._offset))
        except FileNotFoundError:
            return ids
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written is read next time
        self._offset += len(complete)
        for line in complete.splitlines():
            try:
                ids.add(str(json.loads(line)["id"]))
            except (ValueError, KeyError, TypeError):
                continue
        return ids

    def _look(self) -> set[str]:
        heard: set[str] = set()
        stamp = _stamp(self.history)
        if stamp != self._history_stamp:
            self._history_stamp = stamp
            heard |= self._appended_ids()
        stamp = _stamp(self.pending)
        if stamp != self._pending_stamp:
            self._pending_stamp = stamp
            markers = self._read_markers()
            for member in set(markers) | set(self._markers):
                before, after = self._markers.get(member), markers.get(member)
                if before != after:
                    heard |= {str(held["id"]) for held in (before, after) if isinstance(held, dict) and "id" in held}
            self._markers = markers
        return heard

    def wait(self, timeout: float) -> set[str]:
        end = time.monotonic() + timeout
        while True:
            heard = self._look()
            left = end - time.monotonic()
            if heard or left <= 0:
                return heard
            time.sleep(min(POLL, left))

    def close(self) -> None:
        return None


__all__ = ["LocalChanges"]
