"""The rotation queue as the use cases see it: claims, the protocol workers/ implements, following.

A rotation asked for through the queue is claimed first (a pending marker per cluster and
certificate, so a second request is refused rather than queued behind), then dispatched to a
worker; ``follow`` reports its steps until it ends, through the task's retries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.adapters.state import RecordStore
from rotation.core import retry
from rotation.core.clock import Clock
from rotation.core.errors import RotationInProgress
from rotation.core.model import Outcome, RotationRecord, Step, Trigger
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


def follow(
    store: RecordStore,
    queue: RotationQueue,
    rotation_ids: Sequence[str],
    on_step: Callable[[RotationRecord, Step], None] | None = None,
    *,
    timeout: float = 1800.0,
    poll: float = 0.3,
    clock: Clock = SYSTEM_CLOCK,
    progress: Progress | None = None,
) -> list[RotationRecord]:
    """Follow queued rotations until each ends (through retries), reporting new steps as they land
    (and, to ``progress``, how many have ended)."""
    current = list(rotation_ids)
    reported: dict[str, int] = {}
    final: dict[int, RotationRecord] = {}
    deadline = clock.monotonic() + timeout
    while len(final) < len(current) and clock.monotonic() < deadline:
        for index, rotation_id in enumerate(current):
            if index in final:
                continue
            record = store.get(rotation_id)
            if record is None:
                continue
            seen = reported.get(rotation_id, 0)
            for step in record.steps[seen:] if on_step else ():
                on_step(record, step)  # type: ignore[misc]
            reported[rotation_id] = len(record.steps)
            if record.outcome is Outcome.IN_PROGRESS:
                continue
            successor = queue.current(record.cluster, record.cert_name)
            if successor and successor != rotation_id and retry.same_rotation(successor, rotation_id):
                current[index] = successor  # the task retries under a new id
                continue
            final[index] = record
        if progress is not None:
            progress(len(final), len(current))
        clock.sleep(poll)
    return [final[i] if i in final else store.get(rid) or _lost(rid, clock) for i, rid in enumerate(current)]


def _lost(rotation_id: str, clock: Clock) -> RotationRecord:
    return RotationRecord(id=rotation_id, cluster="?", cert_name="?", trigger="?", started_at=clock.now(),
                          outcome=Outcome.FAILED, error="no record of this rotation")


__all__ = ["Claim", "RotationQueue", "follow"]
