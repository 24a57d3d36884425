"""One way to run a coroutine from synchronous code (CLI, Celery tasks, the pipeline).

The loop is uvloop's when installed (a dependency on Linux): its TLS transport is compiled,
asyncio's is pure Python, and a scan is hundreds of handshakes.

Each thread keeps its runner (and loop) between calls: a rotation probes every endpoint twice and a
worker thread runs rotation after rotation, and a new loop each time (its epoll, its self-pipe, its
shutdown) cost about as much CPU as a handshake. A runner is still ``asyncio.Runner``: Ctrl-C in
the main thread cancels the coroutine, and a call from inside a running loop is refused.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.new_event_loop
    return uvloop.new_event_loop


class _ThreadRunner:
    """This thread's runner; its loop is closed when the thread's locals go (the thread ended)."""

    def __init__(self) -> None:
        self.pid = os.getpid()  # a forked child makes its own: a loop's epoll is not to be shared
        self.runner = asyncio.Runner(loop_factory=_loop_factory())

    def __del__(self) -> None:
        loop = getattr(self.runner, "_loop", None)  # asyncio.Runner.close() would run the loop here
        if loop is not None and not loop.is_running() and not loop.is_closed():
            loop.close()


_local = threading.local()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the fastest loop available, reusing this thread's loop."""
    held: _ThreadRunner | None = getattr(_local, "runner", None)
    if held is None or held.pid != os.getpid():
        held = _local.runner = _ThreadRunner()
    try:
        return held.runner.run(coro)
    except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
        _local.runner = None  # interrupted: the next call starts on a new loop
        held.runner.close()
        raise
