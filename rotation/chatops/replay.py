"""The replay cache of signed chat requests: a request's mark is set by its first write to Redis.

A signed request may be replayed inside the signature window, so each one has a mark, keyed on
what its signature covers (the timestamp and a digest of the body: ``request_mark``), that is
set with ``SET NX EX``; a request that finds its mark set has been seen
and is refused (``Replayed``), with nothing written. Reads may happen before the mark is set
(a replay then only loses its answer); every write goes through the request's ``ReplayGuard``.
When the first write is a Lua script, the mark is set inside that script: the check and the
write are one round trip and one atomic step (``eval``); other writes set it first (``check``).
Every command writes at least its audit record, so every request sets its mark.

A command that queues work is also counted against its caller's budget (``chatops.rate_limit``):
``limit`` arms the guard, and the next write counts, in the same script as the mark and after it
(a replay stops at its mark and counts nothing), before the write itself: over the budget, the
mark is kept (a replay of the refused request stays refused), nothing else is written, and
``RateLimited`` says when there is room again. The window is the counter's TTL in Redis, started
by the first command counted in it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

from rotation.core.durations import format_duration
from rotation.core.errors import RateLimited

MARK_PREFIX = "rotation:chatops:seen:"
RATE_PREFIX = "rotation:chatops:rate:"


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

# With a budget: KEYS[1] the mark or '' (none: Mattermost), ARGV[1] its TTL; KEYS[2] the caller's
# counter, ARGV[2] the budget, ARGV[3] the window in ms. {2, ms left} when the budget is spent.
_COUNTED = """
if KEYS[1] ~= '' and not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then return {0} end
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[2]) then return {2, redis.call('PTTL', KEYS[2])} end
redis.call('INCR', KEYS[2])
if redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
%s
"""
_THEN = """local function guarded(KEYS, ARGV)
%s
end
return {1, guarded({unpack(KEYS, 3)}, {unpack(ARGV, 4)})}"""


@cache
def _guarded(script: str) -> str:
    return _GUARDED % script


@cache
def _counted(script: str | None) -> str:
    return _COUNTED % ("return {1}" if script is None else _THEN % script)


def rate_key(platform: str, team: str | None, user: str) -> str:
    """The counter of one caller: platform, team and user id (never a display name, which users change)."""
    return RATE_PREFIX + hashlib.sha256(json.dumps([platform, team, user]).encode()).hexdigest()


@dataclass(frozen=True)
class _Budget:
    key: str
    commands: int
    per: timedelta

    def refusal(self, ms_left: int) -> RateLimited:
        seconds = max(1, math.ceil(ms_left / 1000))
        unit = "command" if self.commands == 1 else "commands"
        return RateLimited(f"slow down: {self.commands} {unit} per {format_duration(self.per)}; "
                           f"try again in {seconds} s", retry_after=seconds)


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
        self.budget: _Budget | None = None

    def _take(self) -> str | None:
        mark, self.mark = self.mark, None
        return mark

    def limit(self, key: str, commands: int, per: timedelta) -> None:
        """Count this request on ``key`` (``rate_key``) with its next write: no round trip of its own."""
        self.budget = _Budget(key, commands, per)

    async def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        """``EVAL script numkeys keys… args…``; the request's first write also sets the mark, in the
        same script. Replayed if it was set already; RateLimited (nothing else written) over the budget."""
        if self.budget is not None:
            return await self._counted(script, numkeys, keys_and_args)
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
        if self.budget is not None:
            await self._counted(None, 0, ())
            return
        mark = self._take()
        if mark is not None and not await self.client.set(mark, "1", nx=True, ex=self.ttl):
            raise Replayed

    async def _counted(self, script: str | None, numkeys: int, keys_and_args: tuple[Any, ...]) -> Any:
        budget, self.budget = self.budget, None
        assert budget is not None
        keys, args = keys_and_args[:numkeys], keys_and_args[numkeys:]
        window = max(1, round(budget.per.total_seconds() * 1000))
        result = await self.client.eval(_counted(script), numkeys + 2, self._take() or "", budget.key, *keys,
                                        self.ttl, budget.commands, window, *args)
        if not result[0]:
            raise Replayed
        if result[0] == 2:
            raise budget.refusal(result[1])
        return result[1] if len(result) > 1 else None


__all__ = ["MARK_PREFIX", "RATE_PREFIX", "ReplayGuard", "Replayed", "rate_key", "request_mark"]
