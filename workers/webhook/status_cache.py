"""`status` answers shared by the requests of one short window, so a burst costs one read of Redis."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.core.clock import Clock
from rotation.core.redaction import redact_text

log = logging.getLogger("rotation.webhook")

STALE_STATUS = 2.0  # seconds a status past --status-cache may still answer while it is refreshed


class StatusCache:
    """``service_status`` per cluster, shared by the requests of the same ``ttl`` seconds: a burst of
    ``status`` commands costs one read of Redis (the state itself changes at scans and rotations).

    A fresh read answers from memory on the event loop. A stale one is refreshed by one background
    thread and still answers meanwhile, for at most ``stale`` seconds more; only a cold (or too
    old) entry makes a request wait for a read, in a thread. ``ttl`` 0: every request reads."""

    def __init__(self, read: Callable[[str | None], dict[str, Any]], ttl: float,
                 in_thread: Callable[..., Awaitable[Any]], clock: Clock = SYSTEM_CLOCK,
                 stale: float = STALE_STATUS) -> None:
        self.read, self.ttl, self.in_thread = read, ttl, in_thread
        self.clock, self.stale = clock, stale
        self._entries: dict[str | None, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._refreshing: set[str | None] = set()

    async def get(self, cluster: str | None) -> dict[str, Any]:
        hit = self._entries.get(cluster)
        if self.ttl > 0 and hit is not None:
            age = self.clock.monotonic() - hit[0]
            if age < self.ttl:
                return hit[1]
            if age < self.ttl + self.stale:
                if cluster not in self._refreshing:
                    self._refreshing.add(cluster)
                    asyncio.get_running_loop().run_in_executor(None, self._refresh, cluster)
                return hit[1]
        return await self.in_thread(self.fetch, cluster)

    def fetch(self, cluster: str | None) -> dict[str, Any]:
        """A read, unless one finished while this waited for the lock (one read at a time)."""
        if self.ttl <= 0:
            return self.read(cluster)
        with self._lock:
            hit = self._entries.get(cluster)
            if hit is None or self.clock.monotonic() - hit[0] >= self.ttl:
                hit = (self.clock.monotonic(), self.read(cluster))
                self._entries[cluster] = hit
        return hit[1]

    def _refresh(self, cluster: str | None) -> None:
        try:
            self.fetch(cluster)
        except Exception as exc:  # noqa: BLE001 - the next request past the stale window reports it
            log.warning("status of %s not refreshed: %s", cluster or "all clusters", redact_text(str(exc)))
        finally:
            self._refreshing.discard(cluster)


__all__ = ["STALE_STATUS", "StatusCache"]
