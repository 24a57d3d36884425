"""The rotation queue as the use cases see it: claims, the protocol workers/ implements, following.

A rotation asked for through the queue is claimed first (a pending marker per cluster and
certificate, so a second request is refused rather than queued behind), then dispatched to a
worker; ``follow`` reports its steps until it ends, through the task's retries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.core import retry
from rotation.core.budget import RECHECK_MAX
from rotation.core.clock import Clock
from rotation.core.errors import RotationInProgress
from rotation.core.model import ANY_CHANGE, Outcome, RotationRecord, Step, Trigger

if TYPE_CHECKING:  # the CLI imports this module: nothing heavy at import time
    from rotation.adapters.state import RecordStore
    from rotation.usecases.context import ServiceContext
    from rotation.usecases.progress import Progress



@dataclass(frozen=True)
class Claim:
    """(cluster, certificate) reserved for one rotation id: its pending marker is ours until it ends."""

    cluster: str
    cert_name: str
    rotation_id: str

    def in_progress(self, holder: str) -> RotationInProgress:
        """The refusal when ``holder`` has (cluster, certificate) already."""
        return RotationInProgress(f"{self.cluster}/{self.cert_name}: a rotation is already in progress ({holder})")


class RotationQueue(Protocol):
    """What the CLI and the webhook need from the queue (implemented in workers/, with Celery)."""

    ctx: ServiceContext  # whose inventory names the rotations, whose store holds their records

    def submit(self, cluster: str, cert_name: str, *, trigger: Trigger | str = Trigger.CLI,
               requested_by: str | None = None, reply_to: str | None = None, countdown: float = 0.0) -> str: ...

    def current(self, cluster: str, cert_name: str) -> str | None: ...


# Seconds a follower waits for a change before it reads again anyway (a notification can be lost).
FALLBACK_POLL = 1.0
# Seconds a rotation that ended may keep its marker before the follower takes its end as final: the
# task releases the marker (or moves it to the retry's id) right after the record ends.
HANDOVER_GRACE = 10.0
# Seconds after which rotations no worker has started yet are reported (``on_unstarted``): a worker takes a
# task within milliseconds, so none running (or none on this Redis) is the likely cause.
UNSTARTED_NOTICE = 5.0


def follow(
    store: RecordStore,
    queue: RotationQueue,
    rotation_ids: Sequence[str],
    on_step: Callable[[RotationRecord, Step], None] | None = None,
    *,
    timeout: float = 1800.0,
    fallback_poll: float = FALLBACK_POLL,
    clock: Clock = SYSTEM_CLOCK,
    progress: Progress | None = None,
    on_unstarted: Callable[[list[str]], None] | None = None,
    unstarted_after: float = UNSTARTED_NOTICE,
) -> list[RotationRecord]:
    """Follow queued rotations until each ends (through retries), reporting each step as it starts and
    again as it ends (once, when it is first seen ended).

    Event-driven: subscribed to the store's changes (``RecordStore.watch``) before the first read, it
    reads a rotation again only when its record or marker changed (or ``fallback_poll`` seconds
    passed without a word), tells ``progress`` how many have ended, and returns as soon as the last
    one ended: its record finished and its
    marker released (or moved to a retry, which is then followed), so that the next request for the
    same certificate is not refused as in progress. ``on_unstarted`` is told once, after
    ``unstarted_after`` seconds, the ids no worker has started yet (the wait goes on until ``timeout``)."""
    follower = _Follower(store, queue, list(rotation_ids), on_step, clock)
    deadline = clock.monotonic() + timeout
    notice_at = clock.monotonic() + unstarted_after if on_unstarted is not None else None
    with store.watch() as changes:
        dirty = set(range(len(follower.current)))
        while True:
            for index in sorted(dirty):
                follower.read(index)
            if progress is not None:
                progress(len(follower.final), len(follower.current))
            if follower.done():
                break
            if notice_at is not None and on_unstarted is not None and clock.monotonic() >= notice_at:
                notice_at = None
                if unstarted := follower.unstarted():
                    on_unstarted(unstarted)
            left = deadline - clock.monotonic()
            if left <= 0:
                break
            waits = [left] + ([notice_at - clock.monotonic()] if notice_at is not None else [])
            heard = changes.wait(max(0.0, min(fallback_poll, *waits)))
            dirty = follower.concerned(heard)
    return follower.results()


class _Follower:
    """What ``follow`` knows of each rotation: its current id (retries move it), steps reported, its end."""

    def __init__(self, store: RecordStore, queue: RotationQueue, current: list[str],
                 on_step: Callable[[RotationRecord, Step], None] | None, clock: Clock) -> None:
        self.store, self.queue, self.current, self.on_step, self.clock = store, queue, current, on_step, clock
        # id -> step index -> whether it was reported finished (a step is reported when first seen, and
        # again when it finishes: the record is saved as each step starts)
        self.reported: dict[str, dict[int, bool]] = {}
        self.final: dict[int, RotationRecord] = {}
        self.ended_at: dict[str, float] = {}  # id -> when its record was first seen ended, marker still held
        self.started: set[int] = set()  # rotations a worker has begun (a step in their record)
        self.seen: dict[int, RotationRecord] = {}  # the last try ended, while its retry has no record yet

    def done(self) -> bool:
        return len(self.final) == len(self.current)

    def unstarted(self) -> list[str]:
        """The rotations still waiting for a worker: no step begun, not ended."""
        return [rid for i, rid in enumerate(self.current) if i not in self.started and i not in self.final]

    def concerned(self, heard: set[str]) -> set[int]:
        """The rotations to read again after ``heard`` (nothing heard: the fallback, all of them)."""
        waiting = [i for i in range(len(self.current)) if i not in self.final]
        if not heard or ANY_CHANGE in heard:
            return set(waiting)
        return {i for i in waiting if any(retry.same_rotation(self.current[i], rid) for rid in heard)}

    def read(self, index: int) -> None:
        while index not in self.final:
            rotation_id = self.current[index]
            record = self.store.get(rotation_id)
            if record is None:
                return
            self._report(rotation_id, record)
            if record.steps:
                self.started.add(index)
            if record.outcome is Outcome.IN_PROGRESS:
                return
            holder = self.queue.current(record.cluster, record.cert_name)
            if holder and holder != rotation_id and retry.same_rotation(holder, rotation_id):
                if record.waits_for_issuer and (record.retry_after or 0) >= RECHECK_MAX.total_seconds():
                    # no room before the worker's next look, retried for up to 40 min: said now, it stays queued
                    self.final[index] = record
                    return
                self.seen[index] = record
                self.current[index] = holder  # the task retries under a new id: read that one now
                continue
            if holder == rotation_id:
                # The task is about to release the marker or move it to a retry: wait for that word
                # (a marker left behind, its release lost to an outage, holds the follower this long).
                first = self.ended_at.setdefault(rotation_id, self.clock.monotonic())
                if self.clock.monotonic() - first < HANDOVER_GRACE:
                    return
            self.final[index] = record

    def _report(self, rotation_id: str, record: RotationRecord) -> None:
        if self.on_step is None:
            return
        reported = self.reported.setdefault(rotation_id, {})
        for index, step in enumerate(record.steps):
            finished, before = step.finished_at is not None, reported.get(index)
            if before is None or (finished and not before):
                reported[index] = finished
                self.on_step(record, step)

    def results(self) -> list[RotationRecord]:
        return [self.final[i] if i in self.final else self.store.get(rid) or self.seen.get(i) or _lost(rid, self.clock)
                for i, rid in enumerate(self.current)]


def _lost(rotation_id: str, clock: Clock) -> RotationRecord:
    return RotationRecord(id=rotation_id, cluster="?", cert_name="?", trigger="?", started_at=clock.now(),
                          outcome=Outcome.FAILED, error="no record of this rotation")


__all__ = ["Claim", "RotationQueue", "follow"]
