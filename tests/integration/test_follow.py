"""Following queued rotations (``rotation.usecases.queue.follow``) is event-driven: it reads a rotation
again when the store says its record or marker changed, never on a timer while changes are heard,
and ends as soon as the last rotation ended (its marker released or moved to a retry, followed).

A worker thread changes the store in lock step with the follower: each change is made only once
the follower waits, so every wake-up must come from a change it heard of (the fallback poll is set
to a minute: a missed notification shows as an empty wait, and fails the test)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from support.clock import FakeClock
from support.processes import RedisServer

from rotation.adapters.state import ServiceState
from rotation.adapters.state.base import Changes
from rotation.adapters.state.local import LocalState
from rotation.adapters.state.redis import RedisState
from rotation.adapters.state.redis_client import connect
from rotation.core.model import Outcome, RotationRecord, Step
from rotation.usecases.queue import follow


@pytest.fixture(params=["redis", "local"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> ServiceState:
    if request.param == "local":
        return LocalState(tmp_path / "state", FakeClock())
    server: RedisServer = request.getfixturevalue("redis_server")
    server.client().flushall()
    return RedisState(connect(server.url), FakeClock())


class StoreQueue:
    """The queue's ``current``: who holds the marker, as ``CeleryRotationQueue`` answers it."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state

    def current(self, cluster: str, cert_name: str) -> str | None:
        return self.state.pending().get((cluster, cert_name))


class LockStep:
    """The store as the follower sees it, its reads and waits counted; the worker acts only while it waits."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.waits: list[set[str]] = []  # what each wait heard
        self.reads = 0
        self.started = 0  # waits begun
        self._turn = threading.Condition()

    def get(self, rotation_id: str) -> RotationRecord | None:
        self.reads += 1
        return self.state.get(rotation_id)

    @contextmanager
    def watch(self) -> Iterator[Changes]:
        with self.state.watch() as changes:
            yield _Counted(self, changes)

    def begin_wait(self) -> None:
        with self._turn:
            self.started += 1
            self._turn.notify_all()

    def when_waiting(self, count: int) -> None:
        """Block until the follower has begun its ``count``-th wait."""
        with self._turn:
            assert self._turn.wait_for(lambda: self.started >= count, 30)


class _Counted:
    def __init__(self, outer: LockStep, changes: Changes) -> None:
        self.outer, self.changes = outer, changes

    def wait(self, timeout: float) -> set[str]:
        self.outer.begin_wait()
        heard = self.changes.wait(timeout)
        self.outer.waits.append(heard)
        return heard

    def close(self) -> None:
        self.changes.close()


def record(rotation_id: str, outcome: Outcome = Outcome.IN_PROGRESS, steps: tuple[str, ...] = (),
           retryable: bool = False, running: str | None = None) -> RotationRecord:
    """``steps`` ended; then ``running`` started (the record as saved when a step starts)."""
    start = FakeClock().now()
    ended = None if outcome is Outcome.IN_PROGRESS else start + timedelta(seconds=1)
    done = [Step(name=n, started_at=start, finished_at=start, ok=True) for n in steps]
    return RotationRecord(id=rotation_id, cluster="east", cert_name="cm", trigger="cli", started_at=start,
                          finished_at=ended, outcome=outcome, retryable=retryable,
                          steps=done + ([Step(name=running, started_at=start)] if running else []))


def run_in_lock_step(store: LockStep, actions: list[Callable[[], None]]) -> threading.Thread:
    def worker() -> None:
        for number, action in enumerate(actions, start=1):
            store.when_waiting(number)
            action()

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    return thread


def test_follow_wakes_on_each_change_follows_a_retry_and_ends_with_it(state: ServiceState) -> None:
    assert state.claim_pending("east", "cm", "r1", 600) is None
    state.save(record("r1"))
    store, seen = LockStep(state), []
    worker = run_in_lock_step(store, [
        lambda: state.save(record("r1", running="read")),
        lambda: state.save(record("r1", Outcome.FAILED, ("read", "issue"), retryable=True)),  # the task retries
        lambda: state.move_pending("east", "cm", "r1", "r1.1"),  # ... under the next id
        lambda: state.save(record("r1.1", steps=("read",))),
        lambda: state.save(record("r1.1", Outcome.VERIFIED, ("read", "issue", "push", "verify"))),
        lambda: state.release_pending("east", "cm", "r1.1"),  # the task's last word: follow ends with it
    ])
    (final,) = follow(store, StoreQueue(state), ["r1"],
                      lambda r, s: seen.append(f"{r.id} {s.name} {'ok' if s.finished_at else '...'}"),
                      fallback_poll=60, clock=FakeClock())
    worker.join(10)
    assert final.id == "r1.1" and final.outcome is Outcome.VERIFIED
    # each step once when first seen, and again when it is seen ended ("read" of r1 started, then ended)
    assert seen == ["r1 read ...", "r1 read ok", "r1 issue ok", "r1.1 read ok", "r1.1 issue ok", "r1.1 push ok",
                    "r1.1 verify ok"]
    # one wait per change before the last (the move's two ids may come apart), each ended by hearing of
    # a change; none after the end
    assert len(store.waits) in (6, 7) and all(store.waits)


@pytest.mark.parametrize("retryable", [True, False])
def test_an_end_is_final_once_its_marker_is_released(state: ServiceState, retryable: bool) -> None:
    assert state.claim_pending("east", "cm", "r1", 600) is None
    state.save(record("r1", steps=("read",)))
    store = LockStep(state)
    worker = run_in_lock_step(store, [
        lambda: state.save(record("r1", Outcome.FAILED, ("read",), retryable=retryable)),  # retried, or not...
        lambda: state.save(record("other", Outcome.VERIFIED)),  # another rotation's news: not read
        lambda: state.release_pending("east", "cm", "r1"),  # ... not: released, the next request may come
    ])
    (final,) = follow(store, StoreQueue(state), ["r1"], fallback_poll=60, clock=FakeClock())
    worker.join(10)
    assert final.id == "r1" and final.outcome is Outcome.FAILED
    assert len(store.waits) == 3 and all(store.waits)
    assert store.reads == 3  # the first read, after the end, after the release: "other" read nothing


class TickingClock(FakeClock):
    """Each look at the monotonic clock finds it a second later."""

    def monotonic(self) -> float:
        self.advance(1.0)
        return super().monotonic()


def test_a_marker_never_released_holds_the_follower_only_for_the_grace(state: ServiceState) -> None:
    from rotation.usecases.queue import HANDOVER_GRACE

    assert state.claim_pending("east", "cm", "r1", 600) is None
    state.save(record("r1", Outcome.FAILED, ("read",)))  # ended; its release lost to an outage
    store, clock = LockStep(state), TickingClock()
    (final,) = follow(store, StoreQueue(state), ["r1"], fallback_poll=0.01, clock=clock)
    assert final.outcome is Outcome.FAILED
    assert store.waits and not any(store.waits)  # it waited for the word, heard none, re-read on the fallback
    assert len(store.waits) < HANDOVER_GRACE  # ended by the grace on the injected clock, not by the timeout


def test_a_try_waiting_for_its_issuers_budget_ends_the_follow_refused_and_stays_queued(state: ServiceState) -> None:
    """A queued rotation that found the issuer's budget spent is retried by the worker for up to 40 min
    (``core.budget.RECHECK_MAX``): past the follower's timeout, which then reported the queued retry
    "failed: no record of this rotation" (exit 1). It ends at once with the refusal (exit 2), still queued."""
    assert state.claim_pending("east", "cm", "r1", 600) is None
    waiting = record("r1", Outcome.REFUSED, ("read",), retryable=True)
    waiting.steps.append(Step(name="issue", started_at=waiting.started_at, finished_at=waiting.started_at, ok=False))
    waiting.blocked_by = waiting.error = "issuer le's budget is spent until ...; the worker tries it again"
    waiting.retry_after = 600.0  # no room before the worker's next look (a shorter wait is followed)
    state.save(waiting)
    state.move_pending("east", "cm", "r1", "r1.1")  # the task retries in up to 10 min: no record yet
    (final,) = follow(state, StoreQueue(state), ["r1"], fallback_poll=0.01, timeout=5, clock=TickingClock())
    assert final.id == "r1" and final.outcome is Outcome.REFUSED and final.blocked_by, final.error
    assert state.pending() == {("east", "cm"): "r1.1"}  # still queued for the worker


def test_a_follow_that_times_out_between_tries_reports_the_last_try_not_a_lost_record(state: ServiceState) -> None:
    assert state.claim_pending("east", "cm", "r1", 600) is None
    state.save(record("r1", Outcome.FAILED, ("read", "issue"), retryable=True))
    state.move_pending("east", "cm", "r1", "r1.1")  # the retry is queued, not started when the follow gives up
    (final,) = follow(state, StoreQueue(state), ["r1"], fallback_poll=0.01, timeout=5, clock=TickingClock())
    assert final.id == "r1" and final.outcome is Outcome.FAILED and final.error != "no record of this rotation"
