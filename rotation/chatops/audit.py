"""The audit trail of chat commands: every authenticated command, allowed or refused.

An entry says who (platform, team, user id, display name), where (channel), what (the command
text), the decision and its reason, and the rotation/task ids it queued. Requests that fail
authentication are not commands of anyone: they are logged by the webhook, not recorded here
(so forgeries cannot flush the trail). Where entries are kept: ``rotation.adapters.state.chat_audit``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from rotation.chatops.authz import Caller
from rotation.core.text import shortened

MAX_TEXT = 300


class Decision:
    ALLOWED = "allowed"
    REFUSED = "refused"
    CONFIRM = "confirmation asked"
    INVALID = "invalid"


@dataclass(frozen=True)
class AuditRecord:
    at: str  # ISO 8601, UTC
    platform: str
    user: str
    command: str
    decision: str
    reason: str = ""
    team: str | None = None
    channel: str | None = None
    user_name: str | None = None
    cluster: str | None = None
    task_ids: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, caller: Caller, text: str, decision: str, reason: str, now: datetime, *,
           cluster: str | None = None, task_ids: tuple[str, ...] = ()) -> AuditRecord:
        text = shortened(text, MAX_TEXT)
        return cls(at=now.isoformat(), platform=caller.platform, user=caller.user, team=caller.team,
                   channel=caller.channel, user_name=caller.user_name, command=text, decision=decision,
                   reason=reason, cluster=cluster, task_ids=tuple(task_ids))

    def to_dict(self) -> dict[str, Any]:
        # Field by field, not dataclasses.asdict: its deep copy is most of an append's CPU.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["task_ids"] = list(self.task_ids)
        return data


__all__ = ["AuditRecord", "Decision"]
