"""SIGTERM for a rotation running in the CLI: unwind like Ctrl-C instead of dying on the spot.

Python's default SIGTERM ends the process at once, skipping every ``finally``: a rotation that had
pushed would leave the cluster half-rotated. Raised as ``Interrupted`` (a BaseException) in the
main thread, the signal unwinds through the pipeline, whose recovery rolls back and records first.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from rotation.errors import Interrupted


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While inside, the first SIGTERM raises Interrupted; a second one during the rollback is ignored
    (SIGKILL is the way to stop it harder). Outside the main thread signals cannot be handled: no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def unwind(signum: int, frame: object) -> None:
        nonlocal fired
        if not fired:
            fired = True
            raise Interrupted("SIGTERM")

    previous = signal.signal(signal.SIGTERM, unwind)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = ["sigterm_unwinds"]
