"""Live progress on stderr for commands that take a while (`check`, `policy audit|apply`, `rotate --all`).

Shown only when stderr is a terminal, only once the work has taken more than ``DELAY`` seconds (a
quick command prints nothing extra), never under ``--json`` or ``--no-wait`` (callers pass
``enabled=False``). A ticker thread draws it even while no step completes (a slow REST read), and it
is transient: gone when the work ends, so the command's own output follows as before. rich is
imported only once the bar is drawn.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

DELAY = 1.0  # seconds of work before anything is drawn
TICK = 0.1  # seconds between redraws


class LiveProgress:
    """A ``rotation.usecases.progress.Progress`` that draws a bar on a terminal. Use as a context manager."""

    def __init__(self, label: str, *, enabled: bool = True, unit: str = "", stream: IO[str] | None = None,
                 clock: Callable[[], float] = time.monotonic, delay: float = DELAY, ticker: bool = True) -> None:
        self._label, self._unit = label, unit
        self._stream = stream if stream is not None else sys.stderr
        self._clock, self._delay, self._ticker = clock, delay, ticker
        self.active = enabled and _is_terminal(self._stream)
        self._started = clock()
        self._done, self._total = 0, 0
        self._drawn_at = float("-inf")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def __call__(self, done: int, total: int) -> None:
        with self._lock:
            self._done, self._total = done, total
            due = self.active and self._clock() - self._drawn_at >= TICK
        if due:  # at most one draw per tick: a fleet's hundreds of handshakes do not each redraw
            self.poll()

    def poll(self) -> None:
        """Draw (from ``delay`` seconds on) what is known now."""
        if not self.active:
            return
        with self._lock:
            if self._stop.is_set():
                return
            if self._bar is None and self._clock() - self._started >= self._delay:
                self._bar, self._task = self._start_bar()
            if self._bar is not None and self._task is not None:
                self._bar.update(self._task, completed=self._done, total=self._total or None)
                self._bar.refresh()
                self._drawn_at = self._clock()

    def _start_bar(self) -> tuple[Progress, TaskID]:
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        columns: list[Any] = [SpinnerColumn(), TextColumn(escape(self._label)), BarColumn(), MofNCompleteColumn()]
        columns += [TextColumn(escape(self._unit))] if self._unit else []
        # stdout goes above the bar only when it is a terminal too: redirected to a file it stays there
        bar = Progress(*columns, TimeElapsedColumn(), console=Console(file=self._stream), transient=True,
                       auto_refresh=False, redirect_stdout=_is_terminal(sys.stdout), redirect_stderr=True)
        bar.start()
        return bar, bar.add_task(self._label, total=self._total or None, completed=self._done)

    def __enter__(self) -> LiveProgress:
        if self.active and self._ticker:
            self._thread = threading.Thread(target=self._tick, name="live-progress", daemon=True)
            self._thread.start()
        return self

    def _tick(self) -> None:
        while not self._stop.wait(TICK):
            self.poll()

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if self._bar is not None:
                self._bar.stop()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or exotic stream
        return False


__all__ = ["DELAY", "LiveProgress"]
