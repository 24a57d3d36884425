"""Submitting rotations to the queue: one per (cluster, certificate) at a time, whoever asks.

A Redis marker ``pending:<cluster>:<cert>`` is claimed (SET NX) before the task is sent and
released when the rotation ends for good; a second request meanwhile is refused as "already
in progress" instead of being queued behind the first. The task id is the rotation id.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from rotation.errors import ConfigError, RotationInProgress
from rotation.model import RotationRecord, Trigger
from rotation.pipeline import utc_now
from rotation.service import ServiceContext
from workers.celery_app import celery_app

ROTATE_TASK = "rotation.rotate_certificate"


class RotationQueue:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        if ctx.redis_store is None:
            raise ConfigError("the queue needs Redis (ROTATION_STORE=redis and ROTATION_REDIS_URL)")
        self.store = ctx.redis_store

    def _pending_ttl(self, countdown: float) -> int:
        # Long enough for every retry of the task; short enough that a lost message frees the slot.
        per_try = self.ctx.settings.task_time_limit + timedelta(minutes=5)
        return int((per_try * 5).total_seconds() + countdown)

    def submit(
        self,
        cluster: str,
        cert_name: str,
        *,
        trigger: Trigger | str = Trigger.CLI,
        requested_by: str | None = None,
        reply_url: str | None = None,
        countdown: float = 0.0,
    ) -> str:
        """Queue a rotation; returns its id. RotationInProgress if one is queued or running."""
        plan = self.ctx.inventory().plan(cluster, cert_name)  # unknown names fail here, before anything
        name = str(plan.cert_name)
        rotation_id = uuid.uuid4().hex[:12]
        holder = self.store.claim_pending(cluster, name, rotation_id, self._pending_ttl(countdown))
        if holder is not None:
            raise RotationInProgress(f"{cluster}/{name}: a rotation is already in progress (rotation {holder})")
        running = getattr(self.ctx.locker, "holder", lambda *_: None)(cluster, name)
        if running:
            self.store.release_pending(cluster, name, rotation_id)
            raise RotationInProgress(f"{cluster}/{name}: a rotation is already in progress ({running})")
        self.store.save(RotationRecord(id=rotation_id, cluster=cluster, cert_name=name, trigger=str(trigger),
                                       started_at=utc_now(), requested_by=requested_by))
        celery_app.send_task(
            ROTATE_TASK,
            kwargs={"cluster": cluster, "cert_name": name, "rotation_id": rotation_id, "trigger": str(trigger),
                    "requested_by": requested_by, "reply_url": reply_url},
            task_id=rotation_id,
            countdown=countdown or None,
        )
        return rotation_id

    def hand_over(self, cluster: str, cert_name: str, old_id: str, new_id: str) -> None:
        """A retry continues under a new rotation id: move the marker so followers can find it."""
        self.store.move_pending(cluster, cert_name, old_id, new_id)

    def finished(self, cluster: str, cert_name: str, rotation_id: str) -> None:
        self.store.release_pending(cluster, cert_name, rotation_id)

    def current(self, cluster: str, cert_name: str) -> str | None:
        return self.store.pending().get((cluster, cert_name))
