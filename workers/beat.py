"""``rotation beat``'s scheduler: Celery's own (``PersistentScheduler``) behind a lease on the schedule.

Any number of beats may run; the one that holds the schedule's lease (``ServiceState.hold_schedule``,
the ``rotation:beat`` key with the service's Redis) sends the periodic tasks and renews the lease every
third of it. The others stand by: each says once which beat holds the schedule, and takes over when
that beat stops cleanly (it releases the lease) or stops renewing it (the lease lapses).

Whenever a beat takes the schedule (at start, or taking over), the entries of ``schedules.RUN_AT_START``
run at once (a fresh deployment scans now, not an interval later) and every other entry counts from now:
a standby's own schedule file is stale, and the beat that held the schedule already ran what was due.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from celery.beat import PersistentScheduler  # type: ignore[import-untyped]  # celery ships no type hints
from celery.schedules import crontab  # type: ignore[import-untyped]

from rotation.adapters.state import ServiceState
from rotation.config import ServiceSettings
from rotation.core.errors import RotationError
from schedules import RUN_AT_START

log = logging.getLogger("rotation.beat")


def beat_holder() -> str:
    """What the lease says about its holder: enough for an operator to find it."""
    return f"beat on {socket.gethostname()} pid {os.getpid()} #{os.urandom(3).hex()}"


class LeasedScheduler(PersistentScheduler):  # type: ignore[misc]  # celery ships no type hints
    """A ``PersistentScheduler`` that sends tasks only while it holds the schedule's lease (see the module)."""

    max_interval: float  # Celery's: the longest sleep between ticks

    def __init__(self, *args: Any, state: ServiceState | None = None, lease_seconds: float | None = None,
                 holder: str | None = None, monotonic: Callable[[], float] = time.monotonic, **kwargs: Any) -> None:
        if state is None:
            from workers.context import context

            state = context().state
        self.state = state
        self.lease_seconds = lease_seconds or ServiceSettings.from_env().beat_lease.total_seconds()
        self.renew_every = self.lease_seconds / 3
        self.holder = holder or beat_holder()
        self.monotonic = monotonic
        self.holding = False
        self.renewed_at = 0.0  # monotonic time a renewal was *sent* that the state then confirmed
        self._standby_noted: str | None = None
        super().__init__(*args, **kwargs)
        self.max_interval = min(self.max_interval, self.renew_every)  # tick often enough to renew

    def tick(self, *args: Any, **kwargs: Any) -> float:
        took = not self.holding
        if not self._keep_lease():
            return self.renew_every  # standing by: try again a third of a lease later
        if took:
            self._start_schedule()
        return float(min(super().tick(*args, **kwargs), self.renew_every))

    def _keep_lease(self) -> bool:
        """Whether this beat holds the schedule now (renewing the lease when a third of it has passed)."""
        sent = self.monotonic()
        if self.holding and sent - self.renewed_at < self.renew_every:
            return True
        try:
            held_by = self.state.hold_schedule(self.holder, self.lease_seconds)
        except RotationError as exc:
            # measured after the failed call, which may have taken long: never past our own lease
            if self.holding and self.monotonic() - self.renewed_at < self.lease_seconds:
                return True  # no answer, but our lease still runs: nobody else can hold the schedule yet
            if self.holding:
                log.warning("beat: cannot renew the schedule's lease (%s); standing by", exc.message)
            self.holding = False
            return False
        if held_by is None:
            if not self.holding:
                log.info("beat: %s holds the schedule (lease %gs)", self.holder, self.lease_seconds)
            self.holding, self.renewed_at, self._standby_noted = True, sent, None
            return True
        if self.holding:
            log.warning("beat: the schedule's lease was taken by %s; standing by", held_by)
        elif held_by != self._standby_noted:
            log.warning("beat: the schedule is held by %s; standing by (taking over when it stops or its "
                        "%gs lease lapses)", held_by, self.lease_seconds)
        self.holding, self._standby_noted = False, held_by
        return False

    def _start_schedule(self) -> None:
        """Just took the schedule: run RUN_AT_START now, count every other interval entry from now (a
        crontab entry keeps its time of day: a takeover just after it must not skip that night's run)."""
        for name, entry in list(self.schedule.items()):
            if name in RUN_AT_START:
                self.apply_entry(entry, producer=self.producer)
            if not isinstance(entry.schedule, crontab):
                entry.last_run_at = entry.default_now()
        self._heap = None  # rebuilt from the entries as they are now

    def close(self) -> None:
        if self.holding:
            self.holding = False
            try:
                self.state.release_schedule(self.holder)
                log.info("beat: %s released the schedule", self.holder)
            except RotationError as exc:
                log.warning("beat: could not release the schedule's lease (%s): it lapses in %gs",
                            exc.message, self.lease_seconds)
        super().close()


__all__ = ["LeasedScheduler", "beat_holder"]
