"""Time, as a port: whatever reads the clock or waits takes a ``Clock`` (the system's in production,
a fake one in tests that are about timing logic), so nothing sleeps or compares wall time by itself."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (deadlines, leases, cache ages)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a fake clock only moves its time on)."""
        ...


__all__ = ["Clock"]
