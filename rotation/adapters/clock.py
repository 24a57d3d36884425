"""The system's clock: the one implementation of ``rotation.core.clock.Clock`` outside tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


def utc_now() -> datetime:
    return SYSTEM_CLOCK.now()


__all__ = ["SYSTEM_CLOCK", "SystemClock", "utc_now"]
