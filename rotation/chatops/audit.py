"""The audit trail of chat commands: every authenticated command, allowed or refused.

Records go to Redis lists as JSON, newest first, the last ``KEEP`` kept (``rotation:chatops:audit``
and one ``rotation:chatops:audit:<cluster>`` per cluster named): who (platform, team, user id,
display name), where (channel), what (the command text), the decision and its reason,
and the rotation/task ids it queued. Requests that fail authentication are not commands of
anyone: they are logged by the webhook, not recorded here (so forgeries cannot flush the trail).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
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
        # Field by field, not dataclasses.asdict: its deep copy is most of an append's CPU.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["task_ids"] = list(self.task_ids)
        return data


# Push and cap every list in one script (the webhook appends on each request).
_APPEND = """
for _, key in ipairs(KEYS) do
  redis.call('LPUSH', key, ARGV[1])
  redis.call('LTRIM', key, 0, tonumber(ARGV[2]) - 1)
end
return #KEYS
"""


def _lists(record: AuditRecord) -> list[str]:
    return [KEY, f"{KEY}:{record.cluster}"] if record.cluster else [KEY]


def _entry(record: AuditRecord) -> str:
    return json.dumps(record.to_dict(), sort_keys=True)


class AuditLog:
    """Reads the trail (``rotation history``, ``status``). ``client``: a redis.Redis with
    ``decode_responses=True``. The webhook writes it (``append_command``)."""

    def __init__(self, client: Any) -> None:
        self.redis = client

    def recent(self, limit: int = 50, cluster: str | None = None) -> list[dict[str, Any]]:
        """Newest first; with ``cluster``, only the commands that named it."""
        key = f"{KEY}:{cluster}" if cluster else KEY
        return [json.loads(r) for r in self.redis.lrange(key, 0, max(0, limit - 1))]


def append_command(record: AuditRecord) -> tuple[Any, ...]:
    """``EVAL`` arguments that append ``record`` (the webhook runs them through its replay guard)."""
    keys = _lists(record)
    return (_APPEND, len(keys), *keys, _entry(record), KEEP)


__all__ = ["AuditLog", "AuditRecord", "Decision", "append_command"]
