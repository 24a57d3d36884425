"""Hearing of record and marker changes in Redis: one pub/sub channel, ``rotation:records``.

``RedisState`` publishes a rotation's id on it with every record save (in the same MULTI as the
write, so whoever hears it reads the new record) and with every move or release of a pending
marker (inside the script that changes it). A follower subscribes before it reads, then waits
for a message instead of polling. Pub/sub is fire-and-forget: a message lost while the
follower's connection was down only delays it until its own bounded wait ends.

A wait ends at its timeout whatever Redis does, give or take a connect or two (at most
``SUBSCRIBER_TIMEOUT`` each): the subscription has a client of its own that tries each read and
connect once (``_Client.subscriber``; redis-py would otherwise reconnect and read again up to ten
times, each read as long as the wait). At the first connection error the wait drops the
subscription, sleeps out its time and answers ``ANY_CHANGE`` (read everything again: a fallback
poll); the next wait subscribes again, once, and answers ``ANY_CHANGE`` as soon as that is
confirmed (what changed meanwhile is unknown). Whether Redis is down is left to the reader's own
reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import redis

from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.core.clock import Clock
from rotation.core.errors import StoreUnavailable
from rotation.core.model import ANY_CHANGE

CHANNEL = "rotation:records"
DRAIN = 256  # messages read at once after the first one (a busy channel is not read forever)
SUBSCRIBE_TIMEOUT = 5.0  # seconds for Redis to confirm the first subscription


class RedisChanges:
    """``rotation.adapters.state.base.Changes`` over one pub/sub connection to ``client``'s Redis
    (``client``: a ``redis_client.connect`` client; ``clock``: for the waits, the system's)."""

    def __init__(self, client: Any, clock: Clock = SYSTEM_CLOCK) -> None:
        self._url = getattr(client, "redacted_url", "Redis")
        self._clock = clock
        self._client = client.subscriber()
        self._pubsub: Any = None
        try:
            # From the confirmation on every publish reaches us (a read made after ``watch()``
            # returns cannot miss a change that the wait would not hear of).
            self._subscribe(SUBSCRIBE_TIMEOUT)
        except redis.RedisError as exc:
            self.close()
            raise StoreUnavailable(f"Redis at {self._url} is unreachable ({exc})") from exc
        except BaseException:
            self.close()
            raise

    def _subscribe(self, timeout: float) -> None:
        """Subscribe and wait at most ``timeout`` seconds for Redis to confirm it (redis.TimeoutError)."""
        self._pubsub = self._client.pubsub()
        self._pubsub.subscribe(CHANNEL)
        end = self._clock.monotonic() + timeout
        while (left := end - self._clock.monotonic()) > 0:
            message = self._pubsub.get_message(timeout=left)
            if message is not None and message["type"] == "subscribe":
                return
        raise redis.TimeoutError(f"no confirmation of the subscription to {CHANNEL}")

    def wait(self, timeout: float) -> set[str]:
        heard: set[str] = set()
        end = self._clock.monotonic() + timeout
        try:
            if self._pubsub is None:  # dropped by an earlier wait
                self._subscribe(end - self._clock.monotonic())
                return {ANY_CHANGE}
            while not heard:
                left = end - self._clock.monotonic()
                if left <= 0:
                    return heard
                self._take(self._pubsub.get_message(timeout=left), heard)
            for _ in range(DRAIN):  # what else is already here, without waiting
                message = self._pubsub.get_message(timeout=0)
                if message is None:
                    break
                self._take(message, heard)
        except (redis.ConnectionError, redis.TimeoutError):
            self._drop()
            self._clock.sleep(max(0.0, end - self._clock.monotonic()))
            return {ANY_CHANGE}
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis at {self._url} is unreachable ({exc})") from exc
        return heard

    @staticmethod
    def _take(message: dict[str, Any] | None, heard: set[str]) -> None:
        if message is not None and message["type"] == "message":
            data = message["data"]
            heard.add(data.decode() if isinstance(data, bytes) else str(data))

    def _drop(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                self._pubsub.close()
            self._pubsub = None

    def close(self) -> None:
        self._drop()
        with contextlib.suppress(redis.RedisError, OSError):
            self._client.close()


@contextlib.contextmanager
def watch(client: Any, clock: Clock = SYSTEM_CLOCK) -> Iterator[RedisChanges]:
    changes = RedisChanges(client, clock)
    try:
        yield changes
    finally:
        changes.close()


__all__ = ["CHANNEL", "RedisChanges", "watch"]
