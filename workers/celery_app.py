"""The Celery application: Redis broker and result backend, settings chosen for safe rotations.

- acks_late + reject_on_worker_lost: a worker killed mid-rotation gets its task redelivered,
  and the pipeline resumes it (finish or roll back) under the same rotation id.
- hard time limit below the Redis visibility timeout (ROTATION_VISIBILITY_TIMEOUT), so a long task is never redelivered
  while it still runs; prefetch 1 so one slow rotation does not hold others hostage.
"""

from __future__ import annotations

import functools

from celery import Celery  # type: ignore[import-untyped]  # celery ships no type hints

from rotation.config import ServiceSettings
from rotation.config.redis_url import celery_connection
from rotation.core.errors import ConfigError
from schedules import beat_schedule

SOCKET_TIMEOUT = 15  # seconds for each connect and read of the broker and the result backend (sentinels too)


def make_celery(settings: ServiceSettings | None = None) -> Celery:
    settings = settings or ServiceSettings.from_env()
    time_limit = int(settings.task_time_limit.total_seconds())
    visibility = int(settings.visibility_timeout.total_seconds())
    if time_limit >= visibility:
        raise ConfigError(
            f"ROTATION_TASK_TIME_LIMIT ({time_limit}s) must stay below ROTATION_VISIBILITY_TIMEOUT ({visibility}s): "
            "otherwise a long rotation is redelivered while it still runs"
        )
    # A Sentinel URL becomes kombu's form (one sentinel:// per sentinel) plus the master's name.
    url, sentinel_options = celery_connection(settings.redis_url)
    app = Celery("rotation", broker=url, backend=url, include=["workers.tasks", "workers.chat_tasks"])
    transport = {
        **sentinel_options,
        "visibility_timeout": visibility,
        # Sweep for a dead worker's unacked tasks often enough to honour the timeout.
        "unacked_restore_interval": max(1, min(10, visibility // 4)),
        "unacked_restore_throttle": 1,
        "socket_timeout": SOCKET_TIMEOUT,
        "health_check_interval": 15,
    }
    if sentinel_options:  # the result backend gives the sentinels these alone ({} unless set: no timeout at all)
        transport["sentinel_kwargs"] = {"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": SOCKET_TIMEOUT}
    app.conf.update(
        task_default_queue="rotation",
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_track_started=True,
        task_time_limit=time_limit,
        task_soft_time_limit=time_limit - min(60, max(1, time_limit // 5)),
        worker_prefetch_multiplier=1,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        # the result backend reads its socket timeouts from these, not from its transport options (120 s)
        redis_socket_timeout=SOCKET_TIMEOUT,
        redis_socket_connect_timeout=SOCKET_TIMEOUT,
        visibility_timeout=visibility,
        result_expires=86400,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        beat_schedule=beat_schedule(settings),
        timezone="UTC",
    )
    return app


celery_app = make_celery()


@functools.lru_cache(maxsize=8)
def app_for(settings: ServiceSettings) -> Celery:
    """The app that sends to ``settings``' broker: this process's own when it is the same Redis. A
    process that serves more than one configuration (a test run, a CLI given other settings) never
    sends to the broker of whichever configuration imported this module first."""
    same = celery_connection(settings.redis_url)[0] == celery_app.conf.broker_url
    return celery_app if same else make_celery(settings)
