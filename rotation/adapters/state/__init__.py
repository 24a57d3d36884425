"""The service's state behind one port (``base.ServiceState``): Redis for the service, files for one host.

``open_state`` is the one place that chooses between them (``ROTATION_STORE``); nothing else in
the project knows which one it has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rotation.adapters.state.base import Lease, Locker, RecordStore, ServiceState
from rotation.config import ServiceSettings, local_state_dir
from rotation.core.clock import Clock


def open_state(settings: ServiceSettings, clock: Clock, redis: Callable[[], Any]) -> ServiceState:
    """The state ``settings`` name; ``redis`` makes the Redis client when it is the service's."""
    if settings.store == "local":
        from rotation.adapters.state.local import LocalState

        if not settings.redis_url_from_env:
            return LocalState(local_state_dir(), clock)
        # ROTATION_REDIS_URL names the service's Redis: its workers rotate these clusters, so a rotation here
        # holds their lock too (files alone are another lock domain); unset it for a host without the service
        from rotation.adapters.state.redis_lock import RedisLocker

        return LocalState(local_state_dir(), clock, RedisLocker(redis(), settings.lock_lease.total_seconds(),
                                                                max_hold_seconds=settings.task_time_limit.total_seconds()))
    from rotation.adapters.state.journal import RecordJournal
    from rotation.adapters.state.redis import RedisState

    return RedisState(redis(), clock, journal=RecordJournal(local_state_dir() / "journal"),
                      lock_lease=settings.lock_lease.total_seconds(),
                      max_hold=settings.task_time_limit.total_seconds())  # the threads pool enforces no limit


__all__ = ["Lease", "Locker", "RecordStore", "ServiceState", "open_state"]
