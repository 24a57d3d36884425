"""Submitting rotations to the queue: one per (cluster, certificate) at a time, whoever asks.

A Redis marker ``pending:<cluster>:<cert>`` is claimed (SET NX) before the task is sent and
released when the rotation ends for good; a second request meanwhile is refused as "already
in progress" instead of being queued behind the first. The task id is the rotation id.
``CeleryRotationQueue`` is the one implementation of ``rotation.usecases.queue.RotationQueue``.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from rotation.core.errors import RotationError
from rotation.core.model import Outcome, RotationRecord, Trigger, new_rotation_id
from rotation.usecases.context import ServiceContext, inventory_digest
from rotation.usecases.queue import Claim
from workers.celery_app import app_for

ROTATE_TASK = "rotation.rotate_certificate"


class CeleryRotationQueue:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        ctx.settings.require_queue("the queue")
        self.store = ctx.state

    def pending_ttl(self, countdown: float = 0.0) -> int:
        # Long enough for every retry of the task; short enough that a lost message frees the slot.
        per_try = self.ctx.settings.task_time_limit + timedelta(minutes=5)
        return int((per_try * 5).total_seconds() + countdown)

    def new_claim(self, cluster: str, cert_name: str) -> Claim:
        """A claim to make: the canonical name and a new rotation id (unknown names fail here)."""
        return Claim(cluster, str(self.ctx.inventory().plan(cluster, cert_name).cert_name), new_rotation_id())

    def submit(
        self,
        cluster: str,
        cert_name: str,
        *,
        trigger: Trigger | str = Trigger.CLI,
        requested_by: str | None = None,
        reply_to: str | None = None,
        countdown: float = 0.0,
    ) -> str:
        """Queue a rotation; returns its id. RotationInProgress if one is queued or running."""
        claim = self.new_claim(cluster, cert_name)
        holder = self.store.claim_pending(cluster, claim.cert_name, claim.rotation_id, self.pending_ttl(countdown))
        if holder is not None:
            # The holder's end may be only in this host's journal (Redis was away as it ended): a read writes
            # it back, and the claim script takes over a marker whose rotation's record has ended.
            self.store.get(holder)
            holder = self.store.claim_pending(cluster, claim.cert_name, claim.rotation_id,
                                              self.pending_ttl(countdown))
        if holder is not None:
            raise claim.in_progress(f"rotation {holder}")
        return self.dispatch(claim, trigger=trigger, requested_by=requested_by, reply_to=reply_to,
                             countdown=countdown)

    def dispatch(self, claim: Claim, *, trigger: Trigger | str, requested_by: str | None, reply_to: str | None,
                 countdown: float = 0.0) -> str:
        """The rest of ``submit`` once the pending marker is ours: record the rotation and send the task."""
        cluster, name, rotation_id = claim.cluster, claim.cert_name, claim.rotation_id
        inventory = self.ctx.inventory()
        identity = inventory.cluster(cluster).identity
        running = self.store.lock_holders([(identity, name)]).get((identity, name))
        if running:
            self.release(claim)
            raise claim.in_progress(running)
        record = RotationRecord(id=rotation_id, cluster=cluster, cert_name=name, trigger=str(trigger),
                                started_at=self.ctx.clock.now(), requested_by=requested_by)
        saved = False
        try:
            self.store.save(record)
            saved = True
            app_for(self.ctx.settings).send_task(
                ROTATE_TASK,
                kwargs={"cluster": cluster, "cert_name": name, "rotation_id": rotation_id, "trigger": str(trigger),
                        "requested_by": requested_by, "reply_to": reply_to,
                        # the worker refuses a rotation asked for with another inventory (`rotate -c FILE`)
                        "inventory": inventory_digest(inventory)},
                task_id=rotation_id,
                countdown=countdown or None,
                # the record is the result (the task ignores its own): not subscribing to the result's
                # channel spares the sender two Redis round trips and its result consumer per rotation
                ignore_result=True,
            )
        except Exception as exc:
            if saved:  # no worker will ever end this record: end it here, or it stays `in_progress`
                from rotation.usecases.rotate.run import describe  # the pipeline: not loaded to queue (CLI start)

                record.outcome, record.finished_at = Outcome.FAILED, self.ctx.clock.now()
                record.error = f"not queued: {describe(exc)}"
                with contextlib.suppress(RotationError):
                    self.store.save(record)
            self.release(claim)  # not queued: the next request may be
            raise
        return rotation_id

    def release(self, claim: Claim) -> None:
        """Give back a claim that will not be dispatched."""
        self.store.release_pending(claim.cluster, claim.cert_name, claim.rotation_id)

    def hand_over(self, cluster: str, cert_name: str, old_id: str, new_id: str) -> None:
        """A retry continues under a new rotation id: move the marker so followers can find it."""
        self.store.move_pending(cluster, cert_name, old_id, new_id)

    def finished(self, cluster: str, cert_name: str, rotation_id: str) -> None:
        self.store.release_pending(cluster, cert_name, rotation_id)

    def current(self, cluster: str, cert_name: str) -> str | None:
        return self.store.pending().get((cluster, cert_name))

