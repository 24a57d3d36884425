"""The replay cache of signed chat requests: a request's mark is set by its first write to Redis.

A signed request may be replayed inside the signature window, so each one has a mark (a hash of
its signature) that is set with ``SET NX EX``; a request that finds its mark set has been seen
and is refused (``Replayed``), with nothing written. Reads may happen before the mark is set
(a replay then only loses its answer); every write goes through the request's ``ReplayGuard``.
When the first write is a Lua script, the mark is set inside that script: the check and the
write are one round trip and one atomic step (``eval``); other writes set it first (``check``).
Every command writes at least its audit record, so every request sets its mark.
"""

from __future__ import annotations

from functools import cache
from typing import Any


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


__all__ = ["ReplayGuard", "Replayed"]
