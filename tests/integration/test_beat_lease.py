"""Two beats are safe: one holds the schedule's lease and sends the periodic tasks, the other stands by
and takes over on a clean stop (the lease released) or when the lease lapses; whoever takes the schedule
scans at once. Real Redis, the real Celery broker, real `rotation beat` processes; where the lease's
timing matters, the scheduler runs in this process with an injected clock."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.clock import FakeClock
from support.processes import RedisServer, ServiceProcess, wait_for

from rotation.adapters.state.redis import RedisState
from rotation.adapters.state.redis_client import connect
from workers.beat import LeasedScheduler

SCAN_SENT = "Sending due task scan-all-clusters"


# --- the scheduler in this process: lease timing on an injected clock --------------------------------


@pytest.fixture
def make_scheduler(service_env: dict[str, str], redis_server: RedisServer, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, FakeClock, float], LeasedScheduler]]:
    """LeasedScheduler instances on the test's Redis (state and broker), an hourly scan (so every scan
    sent is one the lease decided on), each with its own schedule file and clock."""
    monkeypatch.setenv("ROTATION_SCAN_INTERVAL", "1h")
    from workers.celery_app import make_celery

    app = make_celery()
    made: list[LeasedScheduler] = []

    def make(holder: str, clock: FakeClock, lease_seconds: float) -> LeasedScheduler:
        scheduler = LeasedScheduler(app=app, schedule_filename=str(tmp_path / f"{holder}.db"),
                                    state=RedisState(connect(redis_server.url), clock), lease_seconds=lease_seconds,
                                    holder=holder, monotonic=clock.monotonic)
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        scheduler.close()


def scans_sent(redis_server: RedisServer) -> int:
    """scan_all messages waiting in the broker's queue (no worker takes them here)."""
    messages = [json.loads(raw) for raw in redis_server.client().lrange("rotation", 0, -1)]
    return sum(message["headers"]["task"] == "rotation.scan_all" for message in messages)


def test_the_holder_scans_at_start_and_a_second_beat_stands_by_until_the_lease_lapses(
        make_scheduler: Callable[[str, FakeClock, float], LeasedScheduler], redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rotation.beat")
    clock_a, clock_b = FakeClock(), FakeClock()
    # 3 s: Redis expires the lease on its own clock, and a busy machine must not let it lapse between A's
    # first tick and its renewal (a few Redis calls apart); B then waits those 3 s for it to lapse
    a, b = make_scheduler("beat A", clock_a, 3.0), make_scheduler("beat B", clock_b, 3.0)
    a.tick()
    assert a.holding and scans_sent(redis_server) == 1  # scanned at start
    for _ in range(3):
        b.tick()
    assert not b.holding and scans_sent(redis_server) == 1
    standby = [r.getMessage() for r in caplog.records if "standing by" in r.getMessage()]
    assert len(standby) == 1 and "held by beat A" in standby[0]  # said once, naming the holder

    clock_a.advance(1.5)  # past a third of the lease: A renews on its next tick
    a.tick()
    assert a.holding and scans_sent(redis_server) == 1

    # A stops renewing (paused, or killed without a goodbye): B takes over once the lease lapses.
    wait_for(lambda: b.tick() is not None and b.holding, 30, 0.05, what="B to take over")
    assert scans_sent(redis_server) == 2  # B's scan at start
    clock_a.advance(3.0)  # A wakes up: its renewal tells it B holds the schedule, and it sends nothing
    a.tick()
    assert not a.holding and scans_sent(redis_server) == 2
    assert any("taken by beat B" in r.getMessage() for r in caplog.records)


def test_a_clean_stop_hands_the_schedule_over_at_once(
        make_scheduler: Callable[[str, FakeClock, float], LeasedScheduler], redis_server: RedisServer) -> None:
    a, b = make_scheduler("beat A", FakeClock(), 30.0), make_scheduler("beat B", FakeClock(), 30.0)
    a.tick()
    b.tick()
    assert a.holding and not b.holding
    a.close()  # releases the 30 s lease: no waiting for it to lapse
    b.tick()
    assert b.holding and scans_sent(redis_server) == 2


# --- real `rotation beat` processes ---------------------------------------------------------------------


def test_two_beat_processes_one_runs_the_schedule_then_the_other_takes_over(
        start_service: Callable[..., ServiceProcess], service_env: dict[str, str]) -> None:
    # A 4 s lease (renewed every 1.3 s): the third beat waits those 4 s once the holder is killed
    env = {**service_env, "ROTATION_SCAN_INTERVAL": "1h", "ROTATION_BEAT_LEASE": "4s"}
    a = start_service("beat", env=env)
    wait_for(lambda: SCAN_SENT in a.log(), 30, what="the first beat's scan at start")
    b = start_service("beat", env=env)
    wait_for(lambda: "standing by" in b.log(), 30, what="the second beat to stand by")
    assert a.process is not None and f"pid {a.process.pid}" in b.log()  # it names the holder
    assert SCAN_SENT not in b.log()

    a.stop()  # SIGTERM: a clean stop releases the lease
    wait_for(lambda: SCAN_SENT in b.log(), 30, what="the second beat to take over")
    assert "released the schedule" in a.log()
    assert a.log().count(SCAN_SENT) == 1 and b.log().count(SCAN_SENT) == 1

    # The holder dies without a goodbye: a third beat waits for the lease to lapse, then takes over.
    c = start_service("beat", env=env)
    wait_for(lambda: "standing by" in c.log(), 30, what="the third beat to stand by")
    b.kill()
    wait_for(lambda: SCAN_SENT in c.log(), 30, what="the third beat to take over")
    assert "released the schedule" not in b.log()


def test_a_holder_that_cannot_reach_redis_for_a_whole_lease_stops_and_another_takes_over(
        make_scheduler: Callable[[str, FakeClock, float], LeasedScheduler], tmp_path: Path) -> None:
    own = RedisServer(tmp_path / "own-redis")  # this test stops it: not the session's server
    own.start()
    try:
        clock = FakeClock()
        a = make_scheduler("beat A", clock, 3.0)
        a.state = RedisState(connect(own.url), clock)
        a.tick()
        assert a.holding
        own.stop()
        clock.advance(1.5)  # a renewal is due; Redis does not answer, but A's lease still runs
        a.tick()
        assert a.holding
        clock.advance(1.5)  # no confirmed renewal for a whole lease: another beat may hold it now
        a.tick()
        assert not a.holding
        own.start()  # an empty Redis: the lease is free; B takes it, and A stays standing by
        b = make_scheduler("beat B", FakeClock(), 3.0)
        b.state = RedisState(connect(own.url), FakeClock())
        b.tick()
        clock.advance(1.5)
        a.tick()
        assert b.holding and not a.holding
    finally:
        own.stop()
