"""The replay cache of signed chat requests: a request's mark is set by its first write to Redis.

A signed request may be replayed inside the signature window, so each one has a mark, keyed on
what its signature covers (the timestamp and a digest of the body: ``request_mark``), that is
set with ``SET NX EX``; a request that finds its mark set has been seen
and is refused (``Replayed``), with nothing written. Reads may happen before the mark is set
(a replay then only loses its answer); every write goes through the request's ``ReplayGuard``.
When the first write is a Lua script, the mark is set inside that script: the check and the
write are one round trip and one atomic step (``eval``); other writes set it first (``check``).
Every command writes at least its audit record, so every request sets its mark.
"""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Any

MARK_PREFIX = "rotation:chatops:seen:"


class Replayed(Exception):  # noqa: N818 - what happened, not an error of ours
    """This request's mark was already set: it was seen before, inside the window. Nothing written."""


# KEYS[1] the mark, ARGV[1] its TTL; the guarded script gets the other KEYS and ARGV as its own.
# Returns {0} for a replay, else {1, the script's result}.
_GUARDED = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then return {0} end
local function guarded(KEYS, ARGV)
%s
end
return {1, guarded({unpack(KEYS, 2)}, {unpack(ARGV, 2)})}
"""


@cache
def _guarded(script: str) -> str:
    return _GUARDED % script


def request_mark(kind: str, timestamp: str, body: bytes) -> str:
    """The mark of a verified request: any copy with the same timestamp and body has the same one,
    however its headers were spelled (the signature check accepts one spelling only, anyway)."""
    return f"{MARK_PREFIX}{kind}:{hashlib.sha256(timestamp.encode() + b':' + body).hexdigest()}"


class ReplayGuard:
    """One request's mark (None: a scheme without timestamps, nothing to check) over a
    ``redis.asyncio`` client. The first write consumes it."""

    def __init__(self, client: Any, mark: str | None, ttl: int) -> None:
        self.client = client
        self.mark = mark
        self.ttl = ttl

    def _take(self) -> str | None:
        mark, self.mark = self.mark, None
        return mark

    async def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        """``EVAL script numkeys keys… args…``; the request's first write also sets the mark, in the
        same script. Replayed if it was set already."""
        mark = self._take()
        if mark is None:
            return await self.client.eval(script, numkeys, *keys_and_args)
        keys, args = keys_and_args[:numkeys], keys_and_args[numkeys:]
        result = await self.client.eval(_guarded(script), numkeys + 1, mark, *keys, self.ttl, *args)
        if not result[0]:
            raise Replayed
        return result[1] if len(result) > 1 else None

    async def check(self) -> None:
        """Before a write that is not a script: set the mark (if still unset). Replayed if it was set."""
        mark = self._take()
        if mark is not None and not await self.client.set(mark, "1", nx=True, ex=self.ttl):
            raise Replayed


__all__ = ["MARK_PREFIX", "ReplayGuard", "Replayed", "request_mark"]
