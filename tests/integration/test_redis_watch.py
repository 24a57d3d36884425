"""Waiting on Redis pub/sub (``redis_watch``) ends at the wait's own timeout while Redis is down or
its connections flap, and hears changes again once Redis is back. A real redis-server of the test's
own, stopped, started and made to drop the subscriber's connection (CLIENT KILL)."""

from __future__ import annotations

import threading
import time

import pytest
from support.processes import RedisServer

from rotation.adapters.state.redis_client import connect
from rotation.adapters.state.redis_watch import CHANNEL, watch
from rotation.core.model import ANY_CHANGE


class RecordingClock:
    """The system's time; what the waits sleep is recorded."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        time.sleep(seconds)


@pytest.mark.timeout(60)
def test_a_wait_while_redis_is_down_is_a_fallback_poll_and_the_next_one_subscribes_again(
    own_redis: RedisServer,
) -> None:
    clock = RecordingClock()
    with watch(connect(own_redis.url), clock) as changes:
        own_redis.stop()
        assert changes.wait(0.2) == {ANY_CHANGE}  # read everything again: something may have changed
        assert changes.wait(0.2) == {ANY_CHANGE}  # still down: one try, then the rest of the wait
        assert len(clock.slept) == 2 and all(0 <= s <= 0.2 for s in clock.slept)  # never past its timeout
        own_redis.start()
        assert changes.wait(30) == {ANY_CHANGE}  # subscribed again: what changed meanwhile is unknown
        assert len(clock.slept) == 2  # answered at the confirmation, not at the timeout
        own_redis.client().publish(CHANNEL, "r1")
        assert changes.wait(30) == {"r1"}


@pytest.mark.timeout(60)
def test_a_flapping_connection_ends_the_wait_without_reconnecting_within_it(own_redis: RedisServer) -> None:
    admin = own_redis.client()
    with watch(connect(own_redis.url), RecordingClock()) as changes:
        before = admin.info("stats")["total_connections_received"]
        stop = threading.Event()

        def flap() -> None:  # the subscriber's connection dropped again and again, Redis itself up
            while not stop.is_set():
                admin.client_kill_filter(_type="pubsub")
                stop.wait(0.05)

        flapper = threading.Thread(target=flap)
        flapper.start()
        try:
            heard = changes.wait(1.0)
        finally:
            stop.set()
            flapper.join()
        assert heard == {ANY_CHANGE}
        # one reconnect (redis-py's own, at the first drop), then the rest of the wait without Redis; redis-py's
        # retries alone would reconnect after each drop and wait the full time again, up to ten times
        assert admin.info("stats")["total_connections_received"] == before + 1
        assert changes.wait(30) == {ANY_CHANGE}  # the next wait subscribes again
        assert admin.info("stats")["total_connections_received"] == before + 2
        admin.publish(CHANNEL, "r2")
        assert changes.wait(30) == {"r2"}
