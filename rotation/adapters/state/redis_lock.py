"""One rotation per (cluster, certificate) across workers: a Redis lease with a fencing token.

Keys (prefix ``rotation:``; ``<c>`` is the cluster's identity, its REST API's ``host:port``)::

    lock:<c>:<cert>     the holder's value, with a lease (PX) renewed every third of it
    fence:<c>:<cert>    hash {token, holder}: INCR'd at every acquisition, never expires

A rotation paused past its lease (SIGSTOP, a long GC, a Redis partition) must not push after
another rotation took over. So before every PUT the pipeline calls ``Lease.check()``: one
script that answers "still ours" only if the lock holds our value and the fence still names us
(and re-takes a lapsed lock nobody took since: a pause nobody used is harmless). When Redis
cannot answer, the local rule decides: push only while the lease last renewed is still running,
because until then the key exists and nobody else can take it. Once another rotation took the
lock, ``lost`` turns true and stays so: the rotation stops and records ``superseded``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

from rotation.core.clock import Clock
from rotation.core.errors import RotationInProgress, Superseded

log = logging.getLogger(__name__)

PREFIX = "rotation:"

# KEYS lock, fence; ARGV value, lease ms -> the new fencing token, or nil when the lock is taken
_ACQUIRE = """
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
local token = redis.call('hincrby', KEYS[2], 'token', 1)
redis.call('hset', KEYS[2], 'holder', ARGV[1])
return token
"""
# KEYS lock, fence; ARGV value, lease ms, token -> 1 still ours (lease renewed), 0 another took it
_KEEP = """
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then
  if redis.call('hget', KEYS[2], 'holder') == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
  if redis.call('exists', KEYS[2]) == 1 then return 0 end
elseif holder then
  return 0
else
  local last = redis.call('hget', KEYS[2], 'holder')
  if last and last ~= ARGV[1] then return 0 end
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
-- the fence is gone (Redis lost its data) and nobody took the lock since: restore both
redis.call('hset', KEYS[2], 'holder', ARGV[1], 'token', ARGV[3])
return 1
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def _key(*parts: str) -> str:
    return PREFIX + ":".join(parts)


class RedisLease:
    """The lock of one running rotation: renewed by the process's renewer thread, checked before every PUT."""

    def __init__(self, client: redis.Redis, cluster: str, cert_name: str, value: str, lease_ms: int,
                 clock: Callable[[], float] = time.monotonic, max_age: float | None = None) -> None:
        self.redis = client
        self.what = f"{cluster}/{cert_name}"
        self.keys = (_key("lock", cluster, cert_name), _key("fence", cluster, cert_name))
        self.value = value
        self.lease_ms = lease_ms
        self.clock = clock
        self.token: int | None = None
        self.renewed_at = clock()  # monotonic time a renewal was *sent* that Redis then confirmed
        self.max_age = max_age  # seconds after acquisition past which the renewer no longer renews it
        self.acquired_at = self.renewed_at
        self._lost = False

    @property
    def lost(self) -> bool:
        return self._lost

    def acquire(self) -> int | None:
        sent = self.clock()
        token = self.redis.eval(_ACQUIRE, 2, *self.keys, self.value, self.lease_ms)
        if token:
            self.token, self.renewed_at, self.acquired_at = int(token), sent, sent
        return self.token

    def outlived(self) -> bool:
        """Held past the rotation's overall bound: its thread is stuck (Celery's threads pool enforces no
        time limit), so renewing it would keep the certificate locked for good."""
        return self.max_age is not None and self.clock() - self.acquired_at > self.max_age

    def keep(self) -> bool | None:
        """One round trip: True still ours (lease renewed), False another rotation has it, None no answer."""
        if self._lost:
            return False
        sent = self.clock()
        try:
            ours = self.redis.eval(_KEEP, 2, *self.keys, self.value, self.lease_ms, self.token or 0)
        except redis.RedisError:
            return None
        if ours:
            self.renewed_at = sent
            return True
        self._lost = True
        log.warning("%s: lock lease lost (fencing token %s): another rotation holds it", self.what, self.token)
        return False

    def check(self) -> None:
        """Immediately before a PUT: raise Superseded unless the lock is provably still ours."""
        ours = self.keep()
        if ours:
            return
        if ours is None and self.clock() - self.renewed_at < self.lease_ms / 1000:
            return  # Redis does not answer, but our lease still runs: nobody else can hold the lock yet
        reason = ("another rotation took the lock" if ours is False else
                  f"Redis has not confirmed the lock for longer than its lease ({self.lease_ms / 1000:g}s)")
        raise Superseded(f"{self.what}: this rotation lost its lock lease (fencing token {self.token}): {reason}; "
                         "it pushes nothing more")

    def release(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self.redis.eval(_RELEASE, 1, self.keys[0], self.value)


class RedisLocker:
    """One rotation per (cluster identity, certificate): the Redis side of ``ServiceState.hold``.

    If the worker dies, renewals stop and the lease expires after ``lease_seconds``; a redelivered
    task can then take over (and the dead worker's token is fenced off for good). A rotation still
    holding its lock after ``max_hold_seconds`` (the task's time limit) is stuck: its lease is no
    longer renewed and lapses the same way.
    """

    def __init__(self, client: redis.Redis, lease_seconds: float = 30.0, clock: Clock | None = None,
                 max_hold_seconds: float | None = None) -> None:
        self.redis: Any = client  # decode_responses=True: answers are str, which redis-py's types cannot say
        self.lease_ms = int(lease_seconds * 1000)
        self.monotonic = clock.monotonic if clock is not None else time.monotonic
        self.max_hold = max_hold_seconds

    def holder(self, cluster: str, cert_name: str) -> str | None:
        return self.redis.get(_key("lock", cluster, cert_name))

    def holders(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Who holds the lock of each (cluster identity, certificate), in one round trip."""
        values = self.redis.mget([_key("lock", c, n) for c, n in pairs]) if pairs else []
        return {pair: value for pair, value in zip(pairs, values, strict=True) if value}

    @contextlib.contextmanager
    def hold(self, cluster: str, cert_name: str, owner: str) -> Iterator[RedisLease]:
        value = f"{owner} on {socket.gethostname()} pid {os.getpid()} #{os.urandom(4).hex()}"
        lease = RedisLease(self.redis, cluster, cert_name, value, self.lease_ms, self.monotonic, self.max_hold)
        if not lease.acquire():
            raise RotationInProgress(f"{cluster}/{cert_name}: a rotation is already in progress "
                                     f"({self.holder(cluster, cert_name) or 'lock just released'})")
        renewer = _renewer()
        renewer.add(lease, self.lease_ms / 3000)
        try:
            yield lease
        finally:
            renewer.remove(lease)
            lease.release()


class _Renewer:
    """One thread per process renews every lease the process holds, each a third of its lease after the
    last renewal (a rotation is far shorter than that: most never renew). A thread per rotation cost a
    thread's start, its wake-ups and its end on every rotation of a busy worker.

    Renewals run one after the other: with Redis away each waits for its timeout, and every lease still
    runs until ``RedisLease.check`` sees it expired, as with a thread each."""

    def __init__(self) -> None:
        self.pid = os.getpid()  # a forked child has the object but not the thread: it builds its own
        self._cond = threading.Condition()
        self._due: dict[RedisLease, tuple[float, float]] = {}  # lease -> (next renewal, period), monotonic
        self._busy: RedisLease | None = None  # the lease being renewed now (outside the condition's lock)
        threading.Thread(target=self._run, name="lease renewer", daemon=True).start()

    def add(self, lease: RedisLease, every: float) -> None:
        with self._cond:
            self._due[lease] = (time.monotonic() + every, every)
            self._cond.notify()

    def remove(self, lease: RedisLease) -> None:
        """No renewal of ``lease`` after this returns (one in flight is waited for, up to 5 s): a renewal
        that ran after the release would find the lock gone and call the lease lost."""
        with self._cond:
            self._due.pop(lease, None)
            self._cond.wait_for(lambda: self._busy is not lease, timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._busy = None
                self._cond.notify_all()
                now = time.monotonic()
                lease = min(self._due, key=lambda held: self._due[held][0], default=None)
                if lease is None or self._due[lease][0] > now:
                    self._cond.wait(None if lease is None else self._due[lease][0] - now)
                    continue
                if lease.outlived():  # a stuck rotation: let its lock lapse so another can take over
                    del self._due[lease]
                    log.warning("%s: the rotation has held its lock for longer than its time limit (%gs): "
                                "its lease is no longer renewed and lapses; another rotation may take over",
                                lease.what, lease.max_age)
                    continue
                self._due[lease] = (now + self._due[lease][1], self._due[lease][1])
                self._busy = lease
            # Keep trying through Redis restarts; stop once another rotation has the lock. The thread serves
            # every lease of the process, so a bug in one renewal must not end the others' renewals.
            try:
                kept = lease.keep()
            except Exception:  # noqa: BLE001 - logged; the lease's own check before each PUT still fences
                log.exception("%s: lease renewal failed", lease.what)
                kept = None
            if kept is False:
                with self._cond:
                    self._due.pop(lease, None)


_shared_renewer: _Renewer | None = None
_renewer_lock = threading.Lock()


def _renewer() -> _Renewer:
    global _shared_renewer
    with _renewer_lock:
        if _shared_renewer is None or _shared_renewer.pid != os.getpid():
            _shared_renewer = _Renewer()
        return _shared_renewer

__all__ = ["RedisLease", "RedisLocker"]
