"""Thin Celery tasks, each calling one use case. Arguments are names and ids, never keys.

rotation.scan_all            beat: one scan task per cluster
rotation.scan_cluster        probe one cluster (handshakes concurrent inside), store state, queue due rotations
rotation.rotate_certificate  one rotation; retried with backoff for transient errors only (``core.retry``)
rotation.audit_all_policies  beat, nightly: one TLS policy audit task per cluster
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Task  # type: ignore[import-untyped]  # celery ships no type hints
from celery.signals import worker_init  # type: ignore[import-untyped]

from rotation.adapters.notify import Notifier
from rotation.adapters.tls import aio
from rotation.chatops.answers import Answer
from rotation.chatops.reporter import RotationReporter
from rotation.core import retry
from rotation.core.errors import RotationError, RotationInProgress
from rotation.core.model import RotationRecord, Trigger
from rotation.core.text import chat
from rotation.usecases.rotate.record import rotate_and_record
from rotation.usecases.rotate.run import RotationOptions
from rotation.usecases.scan import fleet_scan, scan_and_queue
from rotation.usecases.tls_audit import audit_policy
from workers.celery_app import celery_app
from workers.chat_tasks import notifier_for
from workers.context import context
from workers.queue import CeleryRotationQueue

log = logging.getLogger(__name__)


@worker_init.connect
def _share_event_loop(**_: object) -> None:
    """A worker's threads run their tasks' handshakes on one event loop of the process, not one loop per task."""
    aio.share_loop()


def _per_cluster(task: Task) -> list[str]:
    """Beat's entries fan out: one task per cluster, so clusters are handled in parallel."""
    clusters = list(context().inventory().clusters)
    for cluster in clusters:
        task.delay(cluster)
    return clusters


@celery_app.task(name="rotation.scan_all", ignore_result=True)
def scan_all() -> list[str]:
    clusters = fleet_scan(context())
    for cluster in clusters:
        scan_cluster_task.delay(cluster)
    return clusters


@celery_app.task(name="rotation.scan_cluster", bind=True, max_retries=retry.SCAN_RETRIES, acks_late=True,
                 ignore_result=True)
def scan_cluster_task(self: Task, cluster: str) -> dict:
    ctx = context()
    try:
        notifier: Notifier | None = None  # built on the first new warning, once per scan

        def notify(text: str) -> bool:  # a warning the previous scan did not have: once to the channel
            nonlocal notifier
            notifier = notifier or notifier_for(ctx)
            return notifier.notify(Answer(f":warning: {chat(text)}", in_channel=True))

        return scan_and_queue(ctx, cluster, CeleryRotationQueue(ctx), notify=notify)
    except RotationError as exc:  # a ConfigError too: it names the file and field (recorded by the scan)
        # past the last retry, Celery's retry() raises exc: a traceback for an ordinary outage (one line here)
        if retry.retryable(exc) and self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=retry.scan_countdown(self.request.retries)) from None
        log.error("scan of %s failed: %s", cluster, exc.message)
        return {"cluster": cluster, "error": exc.message}


# ignore_result: nobody reads a rotation's task result (the record in the state store is the result), so
# the result backend is not written twice per rotation (STARTED, then SUCCESS).
@celery_app.task(name="rotation.rotate_certificate", bind=True, acks_late=True, max_retries=retry.MAX_ROTATION_RETRIES,
                 ignore_result=True)
def rotate_certificate(
    self: Task,
    cluster: str,
    cert_name: str,
    rotation_id: str,
    trigger: str = Trigger.BEAT,
    requested_by: str | None = None,
    reply_to: str | None = None,
    inventory: str | None = None,
) -> dict:
    """One rotation. Its record always ends and is counted (``rotate_and_record``); then it is notified
    and its pending marker released, or it is retried under the next id (``core.retry``), even when the
    bookkeeping itself meets a Redis outage."""
    ctx = context()
    reporter = RotationReporter(notifier_for(ctx), reply_to)  # chat: progress + result, failures to notify
    options = RotationOptions(rotation_id=rotation_id, trigger=trigger, requested_by=requested_by,
                              progress=reporter.progress)
    try:
        rotated = rotate_and_record(ctx, cluster, cert_name, options, retries=self.request.retries,
                                    inventory=inventory)
    except RotationInProgress as exc:
        # Our own earlier delivery still holds the lease (its worker died): wait for it to lapse.
        raise self.retry(exc=exc, countdown=retry.lease_wait(ctx.settings.lock_lease)) from None
    record, queue = rotated.record, CeleryRotationQueue(ctx)
    if rotated.retry_id:
        next_id = rotated.retry_id
        _bookkeeping(lambda: queue.hand_over(cluster, cert_name, rotation_id, next_id), record)
        reporter.retrying(record, self.request.retries)
        raise self.retry(
            kwargs={"cluster": cluster, "cert_name": cert_name, "rotation_id": next_id, "trigger": trigger,
                    "requested_by": requested_by, "reply_to": reply_to, "inventory": inventory},
            countdown=rotated.retry_in,
        )
    _bookkeeping(lambda: queue.finished(cluster, cert_name, rotation_id), record)
    reporter.finished(record)
    return summary(record)


def _bookkeeping(action: Callable[[], object], record: RotationRecord) -> None:
    """Counters, backoff and markers: a Redis outage is logged (the pending marker has a TTL), never raised
    past the point where the rotation's result is known."""
    try:
        action()
    except RotationError as exc:
        log.error("rotation %s: %s", record.id, exc.message)


@celery_app.task(name="rotation.audit_all_policies", ignore_result=True)
def audit_all_policies() -> list[str]:
    return _per_cluster(audit_policy_task)


@celery_app.task(name="rotation.audit_policy", acks_late=True)
def audit_policy_task(cluster: str) -> dict:
    """Nightly: what every node really accepts vs the policy and the REST settings."""
    ctx = context()
    report = audit_policy(ctx, cluster)
    if report.drift or report.errors:
        log.warning("TLS policy audit of %s: %s", cluster, report.summary())
        notifier_for(ctx).notify(Answer(f":warning: TLS policy audit of {cluster}: {report.summary()}",
                                        in_channel=True))
    return {"cluster": cluster, "drift": len(report.drift), "errors": report.errors}


def summary(record: RotationRecord) -> dict:
    """What the task returns: ids, outcome and fingerprints only (not stored: ``ignore_result``; a result
    backend keeps results in clear)."""
    return {
        "rotation_id": record.id,
        "cluster": record.cluster,
        "cert_name": record.cert_name,
        "outcome": str(record.outcome),
        "old_fingerprint": record.old_fingerprint,
        "new_fingerprint": record.new_fingerprint,
        "error": record.error,
    }
