"""Where the chat audit trail is kept: Redis lists of JSON entries, newest first, the last ``KEEP`` kept
(``rotation:chatops:audit`` and one ``rotation:chatops:audit:<cluster>`` per cluster named)."""

from __future__ import annotations

import json
from typing import Any

KEY = "rotation:chatops:audit"
KEEP = 5000


# Push and cap every list in one script (the webhook appends on each request).
_APPEND = """
for _, key in ipairs(KEYS) do
  redis.call('LPUSH', key, ARGV[1])
  redis.call('LTRIM', key, 0, tonumber(ARGV[2]) - 1)
end
return #KEYS
"""




def append_command(entry: dict[str, Any]) -> tuple[Any, ...]:
    """``EVAL`` arguments that append ``entry`` (an ``AuditRecord.to_dict()``) to the trail and, when
    it names a cluster, to that cluster's (the webhook runs them through its replay guard)."""
    keys = [KEY, f"{KEY}:{entry['cluster']}"] if entry.get("cluster") else [KEY]
    return (_APPEND, len(keys), *keys, json.dumps(entry, sort_keys=True), KEEP)


def recent(client: Any, limit: int = 50, cluster: str | None = None) -> list[dict[str, Any]]:
    """Newest first; with ``cluster``, only the commands that named it. ``client``: a redis.Redis with
    ``decode_responses=True``."""
    key = f"{KEY}:{cluster}" if cluster else KEY
    return [json.loads(r) for r in client.lrange(key, 0, max(0, limit - 1))]


__all__ = ["KEEP", "KEY", "append_command", "recent"]
