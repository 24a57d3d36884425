"""Hearing of record and marker changes in Redis: one pub/sub channel, ``rotation:records``.

``RedisState`` publishes a rotation's id on it with every record save (in the same MULTI as the
write, so whoever hears it reads the new record) and with every move or release of a pending
marker (inside the script that changes it). A follower subscribes before it reads, then waits
for a message instead of polling. Pub/sub is fire-and-forget: a message lost while the
follower's connection was down only delays it until its own bounded wait ends.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import redis

from rotation.core.errors import StoreUnavailable

CHANNEL = "rotation:records"
DRAIN = 256  # messages read at once after the first one (a busy channel is not read forever)
SUBSCRIBE_TIMEOUT = 5.0  # seconds for Redis to confirm the subscription


class RedisChanges:
    """``rotation.adapters.state.base.Changes`` over one pub/sub connection of ``client``."""

    def __init__(self, client: Any) -> None:
        self._url = getattr(client, "redacted_url", "Redis")
        self._pubsub = client.pubsub()
        try:
            self._pubsub.subscribe(CHANNEL)
            # Wait for the confirmation: from then on every publish reaches us (a read made after
            # ``watch()`` returns cannot miss a change that the wait would not hear of).
            end = time.monotonic() + SUBSCRIBE_TIMEOUT
            while time.monotonic() < end:
                message = self._pubsub.get_message(timeout=max(0.0, end - time.monotonic()))
                if message is not None and message["type"] == "subscribe":
                    return
            raise StoreUnavailable(f"Redis at {self._url} did not confirm the subscription to {CHANNEL}")
        except redis.RedisError as exc:
            self.close()
            raise StoreUnavailable(f"Redis at {self._url} is unreachable ({exc})") from exc
        except BaseException:
            self.close()
            raise

    def wait(self, timeout: float) -> set[str]:
        heard: set[str] = set()
        end = time.monotonic() + timeout
        try:
            while not heard:
                left = end - time.monotonic()
                if left <= 0:
                    return heard
                self._take(self._pubsub.get_message(timeout=left), heard)
            for _ in range(DRAIN):  # what else is already here, without waiting
                message = self._pubsub.get_message(timeout=0)
                if message is None:
                    break
                self._take(message, heard)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis at {self._url} is unreachable ({exc})") from exc
        return heard

    @staticmethod
    def _take(message: dict[str, Any] | None, heard: set[str]) -> None:
        if message is not None and message["type"] == "message":
            data = message["data"]
            heard.add(data.decode() if isinstance(data, bytes) else str(data))

    def close(self) -> None:
        with contextlib.suppress(redis.RedisError, OSError):
            self._pubsub.close()


@contextlib.contextmanager
def watch(client: Any) -> Iterator[RedisChanges]:
    changes = RedisChanges(client)
    try:
        yield changes
    finally:
        changes.close()


__all__ = ["CHANNEL", "RedisChanges", "watch"]
