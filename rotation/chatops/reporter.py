"""What a rotation task tells chat: progress and the result, through ``rotation.adapters.notify``."""

from __future__ import annotations

from rotation.adapters.notify import Notifier
from rotation.chatops.answers import progress, rotation_result, waiting
from rotation.core.model import Outcome, RotationRecord, Step, Trigger


class RotationReporter:
    """What a rotation task tells chat: progress and the result to the command's response_url,
    and to the notification channel every beat rotation and every failed/rolled back/refused one."""

    def __init__(self, notifier: Notifier, reply_to: str | None) -> None:
        self.notifier = notifier
        self.reply_to = reply_to

    def progress(self, record: RotationRecord, step: Step) -> None:
        if self.reply_to and step.name == "push" and step.finished_at is None:
            self.notifier.reply(self.reply_to, progress(record, step), final=False, fallback=False)

    def retrying(self, record: RotationRecord, retries: int) -> None:
        """A try that found its issuer's budget spent (or paused) is retried for up to 40 min, past the
        response_url's 30: its caller hears it once, at the first such try, not only at the end."""
        if self.reply_to and record.waits_for_issuer and retries == 0:
            self.notifier.reply(self.reply_to, waiting(record), final=False, fallback=False)

    def finished(self, record: RotationRecord) -> None:
        answer = rotation_result(record)
        replied = False
        if self.reply_to:
            replied = self.notifier.reply(self.reply_to, answer, fallback=False)
        bad = record.outcome in (Outcome.FAILED, Outcome.ROLLED_BACK, Outcome.REFUSED, Outcome.SUPERSEDED)
        if bad or record.trigger == str(Trigger.BEAT) or (self.reply_to and not replied):
            self.notifier.notify(answer)


__all__ = ["RotationReporter"]
