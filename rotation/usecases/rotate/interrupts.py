"""SIGTERM for a rotation running in the CLI: unwind at the next safe point instead of dying.

Python's default SIGTERM ends the process at once, skipping every ``finally``: a rotation that had
pushed would leave the cluster half-rotated. Raising from the signal handler is no better: it can
land anywhere (inside an HTTP request, an event loop callback that swallows it, a cleanup). So the
handler only takes note, and the pipeline calls :func:`check` where stopping is safe (at each step,
in the verification loop, between push attempts); ``Interrupted`` (a BaseException) then unwinds
through the pipeline, whose recovery rolls back and records first. Once raised, later SIGTERMs are
ignored, and recovery itself is no safe point (:func:`deferred`), so the rollback can finish (SIGKILL
is the way to stop it harder).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from rotation.core.errors import Interrupted


class _Sigterm:
    requested = False
    raised = False
    deferred = 0  # inside recovery (:func:`deferred`): a SIGTERM waits until the cluster is settled


_sigterm = _Sigterm()


def check() -> None:
    """Raise Interrupted once, if SIGTERM arrived inside :func:`sigterm_unwinds`."""
    if _sigterm.requested and not _sigterm.raised and not _sigterm.deferred:
        _sigterm.raised = True
        raise Interrupted("SIGTERM")


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Recovery (roll back, verify, probe, undo) is no safe point: a SIGTERM noted before or during it
    would otherwise skip the rollback itself; it is raised at the first :func:`check` after. Only the main
    thread takes note of SIGTERM (:func:`sigterm_unwinds`): elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _sigterm.deferred += 1
    try:
        yield
    finally:
        _sigterm.deferred -= 1


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into Interrupted at the pipeline's next safe point. Outside the main thread
    signals cannot be handled: then this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum: int, frame: object) -> None:
        _sigterm.requested = True

    previous = signal.signal(signal.SIGTERM, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _sigterm.requested = _sigterm.raised = False


__all__ = ["check", "deferred", "sigterm_unwinds"]
