"""How far a long use case has got: a port the entry points implement (the CLI draws a bar on a terminal).

A use case calls ``progress(done, total)`` as work completes; ``total`` may grow while the work is
discovered (a fleet check learns each cluster's endpoints after reading its shape). Calls may come
from several threads. Nothing here draws: the CLI's ``rotation/cli/progress.py`` does.
"""

from __future__ import annotations

import threading
from typing import Protocol


class Progress(Protocol):
    def __call__(self, done: int, total: int) -> None: ...


def no_progress(done: int, total: int) -> None:
    """The default: nobody is watching."""


class Tally:
    """A thread-safe count of work done and known, told to ``progress`` on every change."""

    def __init__(self, progress: Progress | None, total: int = 0) -> None:
        self._progress = progress or no_progress
        self._lock = threading.Lock()
        self.done, self.total = 0, total
        self._progress(0, total)

    def add(self, more: int) -> None:
        """More work discovered."""
        with self._lock:
            self.total += more
            done, total = self.done, self.total
        self._progress(done, total)

    def advance(self, step: int = 1) -> None:
        with self._lock:
            self.done += step
            done, total = self.done, self.total
        self._progress(done, total)


__all__ = ["Progress", "Tally", "no_progress"]
