"""One way to run a coroutine from synchronous code (CLI, Celery tasks, the pipeline).

The loop is uvloop's when installed (a dependency on Linux): its TLS transport is compiled,
asyncio's is pure Python, and a scan is hundreds of handshakes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the fastest loop available."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(coro)
