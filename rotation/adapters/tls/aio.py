"""One way to run a coroutine from synchronous code (CLI, Celery tasks, the pipeline).

The loop is uvloop's when installed (a dependency on Linux): its TLS transport is compiled,
asyncio's is pure Python, and a scan is hundreds of handshakes.

A process whose threads run many coroutines at once (a worker: one scan task per thread) calls
:func:`share_loop` once: from then on :func:`run` hands every coroutine to one loop of the process,
in a thread of its own, instead of building a loop per call. Threads no longer pass the GIL between
loops of their own, and the handshakes of concurrent tasks share the loop's wake-ups.
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


class _SharedLoop:
    """One event loop running in a daemon thread, for the process that started it."""

    def __init__(self) -> None:
        self.pid = os.getpid()  # a forked child has the loop object but not its thread: it builds its own
        self.loop = _loop_factory()()
        self.thread = threading.Thread(target=self.loop.run_forever, name="rotation-aio", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        # The task starts in a copy of the caller's contextvars (its log context), as asyncio.run would.
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # the caller gave up (or the coroutine failed): nothing keeps running for it
            raise


_shared: _SharedLoop | None = None
_sharing = False
_lock = threading.Lock()


def share_loop() -> None:
    """From now on, :func:`run` in this process uses one shared loop (see the module). Idempotent."""
    global _sharing
    _sharing = True


def _shared_loop() -> _SharedLoop | None:
    global _shared
    if not _sharing:
        return None
    with _lock:
        if _shared is None or _shared.pid != os.getpid():
            _shared = _SharedLoop()
        return _shared


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the fastest loop available (the process's shared one after :func:`share_loop`)."""
    shared = _shared_loop()
    if shared is not None and threading.current_thread() is not shared.thread:
        return shared.run(coro)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(coro)
