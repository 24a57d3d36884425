"""One ``ServiceContext`` per worker process: its Redis pool, secret box, REST sessions, issuers and the
parsed inventory are reused by every task the process runs (never one per task: the sessions' sockets
and the issuers' parsed keys would pile up)."""

from __future__ import annotations

import threading

from rotation.usecases.context import ServiceContext

_context: ServiceContext | None = None
_lock = threading.Lock()


def context() -> ServiceContext:
    global _context
    with _lock:
        if _context is None:
            _context = ServiceContext()
        return _context


__all__ = ["context"]
