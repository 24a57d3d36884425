"""The audit trail of chat commands: every authenticated command, allowed or refused.

Records go to Redis lists as JSON, newest first, the last ``KEEP`` kept (``rotation:chatops:audit``
and one ``rotation:chatops:audit:<cluster>`` per cluster named): who (platform, team, user id,
display name), where (channel), what (the command text), the decision and its reason,
and the rotation/task ids it queued. Requests that fail authentication are not commands of
anyone: they are logged by the webhook, not recorded here (so forgeries cannot flush the trail).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from rotation.chatops.authz import Caller

KEY = "rotation:chatops:audit"
KEEP = 5000
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
        text = text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"
        return cls(at=now.isoformat(), platform=caller.platform, user=caller.user, team=caller.team,
                   channel=caller.channel, user_name=caller.user_name, command=text, decision=decision,
                   reason=reason, cluster=cluster, task_ids=tuple(task_ids))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["task_ids"] = list(self.task_ids)
        return data


class AuditLog:
    """``client`` is a redis.Redis with ``decode_responses=True``."""

    def __init__(self, client: Any) -> None:
        self.redis = client

    def append(self, record: AuditRecord) -> None:
        entry = json.dumps(record.to_dict(), sort_keys=True)
        pipe = self.redis.pipeline(transaction=False)
        for key in (KEY, f"{KEY}:{record.cluster}") if record.cluster else (KEY,):
            pipe.lpush(key, entry)
            pipe.ltrim(key, 0, KEEP - 1)
        pipe.execute()

    def recent(self, limit: int = 50, cluster: str | None = None) -> list[dict[str, Any]]:
        """Newest first; with ``cluster``, only the commands that named it."""
        key = f"{KEY}:{cluster}" if cluster else KEY
        return [json.loads(r) for r in self.redis.lrange(key, 0, max(0, limit - 1))]


__all__ = ["AuditLog", "AuditRecord", "Decision"]
