"""The replay guard against a real Redis: the first write of a request sets its mark in the same
script, a second request with the same mark writes nothing, and a script's own result comes back
unchanged (nil, a string, a number); a caller's rate limit is counted in that script too."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio
from support.processes import RedisServer

from rotation.adapters.state.chat_audit import KEY, append_command
from rotation.adapters.state.redis import claim_pending_command
from rotation.chatops.audit import AuditRecord, Decision
from rotation.chatops.authz import Caller
from rotation.chatops.replay import Replayed, ReplayGuard, rate_key
from rotation.core.errors import RateLimited

MARK = "rotation:chatops:seen:test"


def run(redis_server: RedisServer, body: Callable[[redis.asyncio.Redis], Awaitable[None]]) -> None:
    async def main() -> None:
        client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            await client.flushall()
            await body(client)
        finally:
            await client.aclose()
    asyncio.run(main())


def audit_record() -> AuditRecord:
    return AuditRecord.of(Caller("slack", "U1", "T1", "C1"), "status east", Decision.ALLOWED, "",
                          datetime.now(UTC), cluster="east")


def test_the_first_write_sets_the_mark_and_a_replay_writes_nothing(redis_server: RedisServer) -> None:
    async def body(client: redis.asyncio.Redis) -> None:
        first = ReplayGuard(client, MARK, 60)
        assert await first.eval(*append_command(audit_record().to_dict())) == 2  # the script's result: lists written
        assert 0 < await client.ttl(MARK) <= 60
        assert await first.eval(*append_command(audit_record().to_dict())) == 2  # later writes: no mark any more
        assert await client.llen(KEY) == 2

        replay = ReplayGuard(client, MARK, 60)
        with pytest.raises(Replayed):
            await replay.eval(*append_command(audit_record().to_dict()))
        assert await client.llen(KEY) == 2 and await client.llen(f"{KEY}:east") == 2
        with pytest.raises(Replayed):
            await ReplayGuard(client, MARK, 60).check()

    run(redis_server, body)


def test_a_claim_through_the_guard_returns_nil_or_the_holder(redis_server: RedisServer) -> None:
    async def body(client: redis.asyncio.Redis) -> None:
        assert await ReplayGuard(client, MARK + ":1", 60).eval(*claim_pending_command("east", "proxy", "r1", 60)) \
            is None
        assert await ReplayGuard(client, MARK + ":2", 60).eval(*claim_pending_command("east", "proxy", "r2", 60)) \
            == "r1"
        with pytest.raises(Replayed):  # a replay of the first one does not even read the holder
            await ReplayGuard(client, MARK + ":1", 60).eval(*claim_pending_command("east", "proxy", "r3", 60))
        assert await client.get("rotation:pending:east:proxy") == "r1"
        # Without a mark (Mattermost's token) the script runs as it is.
        assert await ReplayGuard(client, None, 60).eval(*claim_pending_command("east", "cm", "r4", 60)) is None
        assert await client.get("rotation:pending:east:cm") == "r4"

    run(redis_server, body)


def test_check_sets_the_mark_once(redis_server: RedisServer) -> None:
    async def body(client: redis.asyncio.Redis) -> None:
        guard = ReplayGuard(client, MARK, 60)
        await guard.check()
        await guard.check()  # consumed: nothing more to check
        assert await client.get(MARK) == "1"
        with pytest.raises(Replayed):
            await ReplayGuard(client, MARK, 60).eval(*append_command(audit_record().to_dict()))
        assert await client.llen(KEY) == 0

    run(redis_server, body)


def test_a_budget_is_counted_after_the_mark_and_before_the_write(redis_server: RedisServer) -> None:
    counter = rate_key("slack", "T1", "U1")
    assert counter == rate_key("slack", "T1", "U1") != rate_key("slack", None, "U1")

    async def body(client: redis.asyncio.Redis) -> None:
        def guard(mark: str | None) -> ReplayGuard:
            limited = ReplayGuard(client, mark, 60)
            limited.limit(counter, 2, timedelta(minutes=1))
            return limited

        assert await guard(MARK + ":1").eval(*append_command(audit_record().to_dict())) == 2
        assert 0 < await client.pttl(counter) <= 60_000 and await client.get(counter) == "1"
        with pytest.raises(Replayed):  # a replay stops at its mark: nothing counted, nothing written
            await guard(MARK + ":1").eval(*append_command(audit_record().to_dict()))
        with pytest.raises(Replayed):
            await guard(MARK + ":1").check()
        assert await client.get(counter) == "1" and await client.llen(KEY) == 1
        await guard(None).check()  # no mark (Mattermost): counted all the same
        assert await client.get(counter) == "2"

        # Over the budget: the mark is set (a replay stays refused), the script does not run, nothing counted.
        with pytest.raises(RateLimited, match=r"slow down: 2 commands per 1m; try again in \d+ s") as info:
            await guard(MARK + ":2").eval(*claim_pending_command("east", "proxy", "r1", 60))
        assert info.value.retry_after is not None and 1 <= info.value.retry_after <= 60
        assert await client.get("rotation:pending:east:proxy") is None and await client.get(counter) == "2"
        assert await client.get(MARK + ":2") == "1"
        with pytest.raises(RateLimited):
            await guard(MARK + ":3").check()
        await client.delete(counter)  # the window is over
        with pytest.raises(Replayed):
            await guard(MARK + ":2").eval(*claim_pending_command("east", "proxy", "r1", 60))
        assert await client.get("rotation:pending:east:proxy") is None and await client.exists(counter) == 0

        # Counted once per request: the writes after the first are not counted again.
        once = guard(MARK + ":4")
        assert await once.eval(*claim_pending_command("east", "proxy", "r2", 60)) is None
        await once.check()
        assert await once.eval(*append_command(audit_record().to_dict())) == 2
        assert await client.get(counter) == "1"

    run(redis_server, body)
