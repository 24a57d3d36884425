"""Settings of the running service, from the environment (not from the inventory file)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from rotation.config.redis_url import is_sentinel, parse_sentinel_url
from rotation.core.durations import format_duration, parse_duration
from rotation.core.errors import ConfigError

STATE_DIR_ENV = "ROTATION_STATE_DIR"
SECRET_KEY_ENV = "ROTATION_SECRET_KEY"
SECRET_KEY_FILE_ENV = "ROTATION_SECRET_KEY_FILE"


def local_state_dir() -> Path:
    """Where local files live (history and locks without Redis, the journal of unsaved records, the
    beat schedule): ``ROTATION_STATE_DIR``, else the user's state folder, never the working directory
    (two runs from two folders must share one lock)."""
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return root / "rotation"


def secret_key_text() -> str | None:
    """The service's encryption key(s), as configured: ``ROTATION_SECRET_KEY`` (comma-separated, new
    first), else the contents of ``ROTATION_SECRET_KEY_FILE``; None when neither is set."""
    raw = os.environ.get(SECRET_KEY_ENV)
    if not raw and os.environ.get(SECRET_KEY_FILE_ENV):
        from rotation.config.files import read_secret_text

        path = Path(os.environ[SECRET_KEY_FILE_ENV])
        raw = read_secret_text(path, f"{SECRET_KEY_FILE_ENV}={path}")
        if not raw.replace(",", "").strip():  # named on purpose: no fallback to a key generated elsewhere
            raise ConfigError(f"{SECRET_KEY_FILE_ENV}={path}: the file is empty (`rotation secret-key` makes a key)")
    return raw or None


def secret_key_setting() -> str:
    """The setting ``secret_key_text`` reads, for messages: the variable, or the file it is given in."""
    if not os.environ.get(SECRET_KEY_ENV) and os.environ.get(SECRET_KEY_FILE_ENV):
        return SECRET_KEY_FILE_ENV
    return SECRET_KEY_ENV


@dataclass(frozen=True)
class ServiceSettings:
    """Settings of the running service, from the environment (12-factor; same names in compose)."""

    redis_url: str = field(default="redis://localhost:6379/0", repr=False)  # its password never in a repr
    store: str = "redis"  # "redis" (the service) or "local" (JSON lines + flock, one host, no queue)
    scan_interval: timedelta = timedelta(hours=1)
    rotation_jitter: timedelta = timedelta(seconds=60)
    backoff_base: timedelta = timedelta(minutes=5)
    backoff_max: timedelta = timedelta(hours=6)
    lock_lease: timedelta = timedelta(seconds=30)
    # The beat that holds the schedule renews this lease; a standby beat takes over once it lapses.
    beat_lease: timedelta = timedelta(seconds=30)
    task_time_limit: timedelta = timedelta(minutes=15)
    # Unacked tasks of a dead worker are redelivered after this; must exceed task_time_limit.
    visibility_timeout: timedelta = timedelta(minutes=20)
    policy_audit_hour: int = 3
    redis_url_from_env: bool = False  # False: ROTATION_REDIS_URL is not set, the default above is used

    @property
    def has_queue(self) -> bool:
        """Whether rotations can go through the queue (Celery over the service's Redis): not on one host
        without Redis (``ROTATION_STORE=local``), where they run in the process that asks."""
        return self.store == "redis"

    def describe_store(self) -> str:
        """Where the service's state is read, for people: the Redis URL (password hidden) and whether it
        is only the default, or the local folder."""
        if self.store == "local":
            return f"local state in {local_state_dir()} (ROTATION_STORE=local)"
        from rotation.config.redis_url import redacted

        default = "" if self.redis_url_from_env else " (ROTATION_REDIS_URL is not set: the default)"
        return f"Redis {redacted(self.redis_url)}{default}"

    def require_queue(self, who: str) -> None:
        if not self.has_queue:
            raise ConfigError(f"{who} needs the service's Redis (ROTATION_STORE=redis and ROTATION_REDIS_URL)")

    @classmethod
    def from_env(cls) -> ServiceSettings:
        env = os.environ

        def duration(name: str, default: timedelta, at_least: timedelta = timedelta(seconds=0.001)) -> timedelta:
            raw = env.get(name)
            if not raw:
                return default
            try:
                value = parse_duration(raw)
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc}") from None
            if value < at_least:  # 0s: a lease Redis refuses, a scan loop without pause, no time for a task
                raise ConfigError(f"{name}: {raw!r} is shorter than {at_least.total_seconds():g}s")
            return value

        store = env.get("ROTATION_STORE", "redis")
        if store not in ("redis", "local"):
            raise ConfigError(f"ROTATION_STORE: {store!r} is not one of redis, local")
        try:
            audit_hour = int(env.get("ROTATION_POLICY_AUDIT_HOUR", "3"))
        except ValueError:
            audit_hour = -1
        if not 0 <= audit_hour <= 23:  # beat's crontab would refuse it with a traceback
            raise ConfigError("ROTATION_POLICY_AUDIT_HOUR: not an hour (0-23)")
        redis_url = env.get("ROTATION_REDIS_URL") or cls.redis_url
        if is_sentinel(redis_url):
            parse_sentinel_url(redis_url)  # ConfigError now, naming the part that is wrong
        state_dir = local_state_dir()
        # the first part of it that exists must be a folder: a file there fails every command that writes state
        existing = next((p for p in (state_dir, *state_dir.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise ConfigError(f"{STATE_DIR_ENV}: {existing} is not a folder (the state folder is {state_dir})")
        beat_lease = duration("ROTATION_BEAT_LEASE", cls.beat_lease, timedelta(0))  # its own message below
        if beat_lease < timedelta(seconds=1):
            raise ConfigError("ROTATION_BEAT_LEASE: at least 1s (beat renews it every third of it)")
        # whole seconds for Celery and kombu, where 0 would mean no limit
        task_time_limit = duration("ROTATION_TASK_TIME_LIMIT", cls.task_time_limit, timedelta(seconds=1))
        visibility_timeout = duration("ROTATION_VISIBILITY_TIMEOUT", cls.visibility_timeout, timedelta(seconds=1))
        if task_time_limit >= visibility_timeout:  # Redis would hand a running task to a second worker
            raise ConfigError(
                f"ROTATION_TASK_TIME_LIMIT ({format_duration(task_time_limit)}) must be shorter than "
                f"ROTATION_VISIBILITY_TIMEOUT ({format_duration(visibility_timeout)}), after which Redis redelivers "
                "a task that is still running to another worker")
        return cls(
            redis_url=redis_url,
            redis_url_from_env=bool(env.get("ROTATION_REDIS_URL")),
            store=store,
            scan_interval=duration("ROTATION_SCAN_INTERVAL", cls.scan_interval),
            rotation_jitter=duration("ROTATION_JITTER", cls.rotation_jitter, timedelta(0)),  # 0s: no jitter
            backoff_base=duration("ROTATION_BACKOFF_BASE", cls.backoff_base),
            backoff_max=duration("ROTATION_BACKOFF_MAX", cls.backoff_max),
            lock_lease=duration("ROTATION_LOCK_LEASE", cls.lock_lease, timedelta(seconds=1)),  # renewed within it
            beat_lease=beat_lease,
            task_time_limit=task_time_limit,
            visibility_timeout=visibility_timeout,
            policy_audit_hour=audit_hour,
        )

