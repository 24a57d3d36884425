"""The rotation lock against a real redis-server: fencing tokens, lost and re-taken leases, Redis away.

Time is injected into the lease (its ``clock``) so "paused past the lease" needs no sleeping."""

from __future__ import annotations

import pytest
from support.processes import RedisServer, free_port

from rotation.adapters.state.redis_client import connect
from rotation.adapters.state.redis_lock import RedisLease, RedisLocker
from rotation.core.errors import RotationInProgress, StoreUnavailable, Superseded

CLUSTER = "127.0.0.1:9443"


@pytest.fixture
def client(redis_server: RedisServer):  # noqa: ANN201
    redis_server.client().flushall()
    return connect(redis_server.url)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_tokens_grow_with_every_acquisition_and_a_second_holder_is_refused(client) -> None:  # noqa: ANN001
    locker = RedisLocker(client, lease_seconds=30)
    with locker.hold(CLUSTER, "cm", "first") as first:
        assert first.token == 1
        with pytest.raises(RotationInProgress, match="first"), locker.hold(CLUSTER, "cm", "second"):
            pass
        first.check()  # still ours: no exception
    with locker.hold(CLUSTER, "cm", "third") as third:
        assert third.token == 2
    with locker.hold(CLUSTER, "proxy", "other cert") as other:
        assert other.token == 1  # one counter per (cluster, certificate)


def test_a_lease_taken_over_by_another_rotation_is_lost_for_good(client) -> None:  # noqa: ANN001
    clock = Clock()
    paused = RedisLease(client, CLUSTER, "cm", "paused rotation", 1000, clock)
    assert paused.acquire() == 1
    client.delete("rotation:lock:127.0.0.1:9443:cm")  # its lease ran out while it was stopped
    with RedisLocker(client, 30).hold(CLUSTER, "cm", "took over") as winner:
        assert winner.token == 2
        with pytest.raises(Superseded, match="another rotation took the lock"):
            paused.check()
    assert paused.lost
    with pytest.raises(Superseded):  # even once the winner is gone: a lost lease stays lost
        paused.check()


def test_a_lapsed_lease_nobody_took_is_taken_back(client) -> None:  # noqa: ANN001
    lease = RedisLease(client, CLUSTER, "cm", "slow rotation", 1000, Clock())
    lease.acquire()
    client.delete("rotation:lock:127.0.0.1:9443:cm")  # lapsed, but nobody acquired it since
    lease.check()
    assert client.get("rotation:lock:127.0.0.1:9443:cm") == "slow rotation" and not lease.lost
    client.flushall()  # Redis lost its data: lock and fence come back with our token
    lease.check()
    assert client.hget("rotation:fence:127.0.0.1:9443:cm", "token") == "1"
    with pytest.raises(RotationInProgress), RedisLocker(client, 30).hold(CLUSTER, "cm", "newcomer"):
        pass


def test_redis_away_pushes_only_while_the_lease_still_runs(client) -> None:  # noqa: ANN001
    clock = Clock()
    lease = RedisLease(client, CLUSTER, "cm", "rotation", 2000, clock)
    lease.acquire()
    away = RedisLease(connect(f"redis://:secret@127.0.0.1:{free_port()}/0"), CLUSTER, "cm", "rotation", 2000, clock)
    away.token, away.renewed_at = lease.token, clock.now
    clock.now += 1.5
    away.check()  # no answer, but renewed 1.5 s ago with a 2 s lease: nobody else can hold it yet
    clock.now += 1.0
    with pytest.raises(Superseded, match="has not confirmed the lock for longer than its lease"):
        away.check()
    with pytest.raises(StoreUnavailable, match=r"redis://:\*\*\*@127\.0\.0\.1"):
        away.redis.get("x")


def test_one_failing_renewal_does_not_end_the_process_renewals_of_other_leases(client) -> None:  # noqa: ANN001
    import threading

    from rotation.adapters.state.redis_lock import _renewer

    class Broken(RedisLease):
        def keep(self) -> bool | None:
            raise RuntimeError("a bug in one renewal")

    class Counted(RedisLease):
        renewed = threading.Event()
        keeps = 0

        def keep(self) -> bool | None:
            Counted.keeps += 1
            if Counted.keeps >= 3:  # renewed again after the broken lease's renewals failed
                Counted.renewed.set()
            return super().keep()

    broken = Broken(client, CLUSTER, "cm", "broken", 30_000)
    counted = Counted(client, CLUSTER, "proxy", "counted", 30_000)
    assert broken.acquire() and counted.acquire()
    renewer = _renewer()
    renewer.add(broken, 0.01)
    renewer.add(counted, 0.01)
    try:
        assert Counted.renewed.wait(30), "the renewer thread stopped after a failing renewal"
    finally:
        renewer.remove(broken)
        renewer.remove(counted)
    assert not counted.lost


class Monotonic:
    """A ``Clock`` whose monotonic time moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def _until(condition, what: str, timeout: float = 30.0) -> None:  # noqa: ANN001
    import time

    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, what
        time.sleep(0.02)


def test_a_rotation_stuck_past_its_time_limit_stops_renewing_its_lease(client, caplog) -> None:  # noqa: ANN001
    """Celery's threads pool enforces no time limit: a rotation thread that never returns must not keep its
    certificate locked for good. Its lease is renewed while it runs within its bound, then lapses."""
    import logging
    import threading

    clock = Monotonic()
    locker = RedisLocker(client, lease_seconds=1.0, clock=clock, max_hold_seconds=600)  # renewed every ~0.33 s
    key = "rotation:lock:127.0.0.1:9443:cm"
    held, wake_up, leases = threading.Event(), threading.Event(), []

    def stuck_rotation() -> None:
        with locker.hold(CLUSTER, "cm", "stuck rotation") as lease:
            leases.append(lease)
            held.set()
            wake_up.wait()  # a call without a timeout: returns only when the test ends

    thread = threading.Thread(target=stuck_rotation, daemon=True)
    thread.start()
    try:
        assert held.wait(30)
        lease = leases[0]
        with caplog.at_level(logging.WARNING, logger="rotation.adapters.state.redis_lock"):
            clock.now += 590  # long but within its bound: still renewed (the lease is 1 s)
            for _ in range(2):  # the lease's time to live runs down, then a renewal sets it back to 1 s
                _until(lambda: client.pttl(key) < 800, "the lease does not run down")
                _until(lambda: client.pttl(key) > 900, "a healthy rotation's lease was not renewed")
            assert client.get(key) == lease.value
            lease.check()  # still ours

            clock.now += 20  # past its time limit: nobody renews it any more, the lock lapses
            _until(lambda: not client.exists(key), "a stuck rotation's lease is still renewed past its time limit")
            with RedisLocker(client, 30).hold(CLUSTER, "cm", "took over") as winner:
                assert winner.token == 2
                with pytest.raises(Superseded, match="another rotation took the lock"):
                    lease.check()  # if it ever wakes up, it pushes nothing more
        stopped = [r for r in caplog.records if "no longer renewed" in r.getMessage()]
        assert len(stopped) == 1 and "127.0.0.1:9443/cm" in stopped[0].getMessage()
    finally:
        wake_up.set()
        thread.join(30)


def test_the_service_bounds_a_lock_by_the_task_time_limit(client, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from datetime import timedelta

    from rotation.adapters.state import open_state
    from rotation.config import ServiceSettings

    monkeypatch.setenv("ROTATION_STATE_DIR", str(tmp_path))
    state = open_state(ServiceSettings(task_time_limit=timedelta(minutes=7)), Monotonic(), lambda: client)  # type: ignore[arg-type]
    assert state.locker.max_hold == 420  # type: ignore[attr-defined]
