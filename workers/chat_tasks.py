"""Chat work that needs a cluster, queued by the webhook and answered to the response_url.

rotation.chat_check    handshake every node of one cluster, post the table
rotation.chat_dry_run  issue and validate (push nothing) the named certificates, post the result

Also the one place that builds a ``Notifier`` for a worker: the notification webhook's URL comes
from the inventory (``chatops.notify``), read when a task needs it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rotation.adapters.notify import Notifier, ReplyBudget
from rotation.chatops import answers
from rotation.core.errors import RotationError
from rotation.core.model import Trigger, new_rotation_id
from rotation.usecases.check import check_clusters
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate.record import rotate_and_record
from rotation.usecases.rotate.run import RotationOptions
from workers.celery_app import celery_app
from workers.context import context

log = logging.getLogger(__name__)

CHECK_TASK = "rotation.chat_check"
DRY_RUN_TASK = "rotation.chat_dry_run"


def notifier_for(ctx: ServiceContext) -> Notifier:
    try:
        url = ctx.inventory().chatops.notify_url()
    except RotationError as exc:
        log.warning("no notification webhook: %s", exc.message)
        url = None
    budget = None
    if ctx.settings.has_queue:  # replies were registered in the service's Redis by the webhook
        try:
            box = ctx.secret_box
        except RotationError as exc:  # replies cannot be read back: results go to the notification webhook
            log.warning("chat replies unavailable: %s", exc.message)
            box = None
        budget = ReplyBudget(ctx.redis, box)
    return Notifier(budget, url)


@celery_app.task(name=CHECK_TASK, ignore_result=True, time_limit=120, soft_time_limit=100)
def chat_check(cluster: str, requested_by: str | None = None, reply_to: str | None = None) -> None:
    ctx = context()
    try:
        report = check_clusters(ctx.inventory(), [cluster])
    except RotationError as exc:
        answer = answers.refused(exc.message)
    else:
        log.info("chat check of %s for %s: %d endpoint(s), %d error(s)", cluster, requested_by, len(report.rows),
                 len(report.errors))
        answer = answers.check_result(cluster, report.rows, report.errors)
    notifier_for(ctx).reply(reply_to, answer, fallback=False)


@celery_app.task(name=DRY_RUN_TASK, ignore_result=True)
def chat_dry_run(cluster: str, cert_names: Sequence[str], requested_by: str | None = None,
                 reply_to: str | None = None) -> None:
    ctx = context()
    records = []
    for name in cert_names:
        # An id of its own: whatever stops it, the dry run's record ends in the history.
        options = RotationOptions(dry_run=True, trigger=Trigger.CHATOPS, requested_by=requested_by,
                                  rotation_id=new_rotation_id())
        try:
            records.append(rotate_and_record(ctx, cluster, name, options).record)
        except RotationError as exc:
            notifier_for(ctx).reply(reply_to, answers.refused(exc.message), fallback=False)
            return
    notifier_for(ctx).reply(reply_to, answers.results(records), fallback=False)


class CeleryChatTasks:
    """``rotation.chatops.ChatTasks`` over Celery: returns the task id at once."""

    def check(self, cluster: str, *, requested_by: str, reply_to: str | None) -> str:
        task_id = new_rotation_id()
        celery_app.send_task(CHECK_TASK, kwargs={"cluster": cluster, "requested_by": requested_by,
                                                 "reply_to": reply_to}, task_id=task_id)
        return task_id

    def dry_run(self, cluster: str, cert_names: Sequence[str], *, requested_by: str, reply_to: str | None) -> str:
        task_id = new_rotation_id()
        celery_app.send_task(DRY_RUN_TASK, kwargs={"cluster": cluster, "cert_names": list(cert_names),
                                                   "requested_by": requested_by, "reply_to": reply_to},
                             task_id=task_id)
        return task_id


__all__ = ["CHECK_TASK", "CeleryChatTasks", "DRY_RUN_TASK", "chat_check", "chat_dry_run", "notifier_for"]
