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


# Push and cap every list in one command (the webhook appends on each request).
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
    """``client`` is a redis.Redis with ``decode_responses=True``."""

    def __init__(self, client: Any) -> None:
        self.redis = client
        self._append = client.register_script(_APPEND)

    def append(self, record: AuditRecord) -> None:
        self._append(keys=_lists(record), args=[_entry(record), KEEP])

    def recent(self, limit: int = 50, cluster: str | None = None) -> list[dict[str, Any]]:
        """Newest first; with ``cluster``, only the commands that named it."""
        key = f"{KEY}:{cluster}" if cluster else KEY
        return [json.loads(r) for r in self.redis.lrange(key, 0, max(0, limit - 1))]


# The same, only if KEYS[1] (a request's replay mark) is new: then the mark is set, with a TTL.
_APPEND_ONCE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[3])) then return 0 end
for i = 2, #KEYS do
  redis.call('LPUSH', KEYS[i], ARGV[1])
  redis.call('LTRIM', KEYS[i], 0, tonumber(ARGV[2]) - 1)
end
return 1
"""


class AsyncAuditLog:
    """The same trail through a ``redis.asyncio`` client (the webhook's event loop)."""

    def __init__(self, client: Any) -> None:
        self._append = client.register_script(_APPEND)
        self._append_once = client.register_script(_APPEND_ONCE)

    async def append(self, record: AuditRecord) -> None:
        await self._append(keys=_lists(record), args=[_entry(record), KEEP])

    async def append_once(self, record: AuditRecord, *, mark: str, ttl: int) -> bool:
        """Set ``mark`` and append, in one step, unless ``mark`` exists (then write nothing, return
        False): the webhook's replay check and the record of a command answered from memory."""
        return bool(await self._append_once(keys=[mark, *_lists(record)], args=[_entry(record), KEEP, ttl]))


class AuditBuffer:
    """Collects one request's records so that the caller writes them before answering."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def append(self, record: AuditRecord) -> None:
        self.records.append(record)


__all__ = ["AsyncAuditLog", "AuditBuffer", "AuditLog", "AuditRecord", "Decision"]
