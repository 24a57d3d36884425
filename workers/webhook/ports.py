"""The chat use case's ports for one webhook request: every write goes through the request's replay guard.

Redis is reached through ``redis.asyncio`` on the event loop; only blocking work (Celery's
publish, the synchronous store) goes to a thread.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from rotation.adapters.state.chat_audit import append_command
from rotation.adapters.state.redis import claim_pending_command
from rotation.chatops.audit import AuditRecord
from rotation.chatops.authz import Caller
from rotation.chatops.replay import ReplayGuard, rate_key
from rotation.config.chatops import RateLimit
from rotation.core.model import Trigger
from rotation.usecases.queue import Claim

if TYPE_CHECKING:
    from workers.queue import CeleryRotationQueue


class GuardedAudit:
    """The audit sink of one request: the record goes with the replay mark when it is the first write."""

    def __init__(self, guard: ReplayGuard) -> None:
        self.guard = guard

    async def append(self, record: AuditRecord) -> None:
        await self.guard.eval(*append_command(record.to_dict()))


class GuardedMeter:
    """The rate limit of one request (``Meter``): the caller's counter goes into the request's next write,
    in the same script as its replay mark (``ReplayGuard.limit``), so counting costs no round trip."""

    def __init__(self, guard: ReplayGuard, limit: RateLimit) -> None:
        self.guard, self.limit = guard, limit

    def count(self, caller: Caller) -> None:
        self.guard.limit(rate_key(caller.platform, caller.team, caller.user), self.limit.commands, self.limit.per)


class LoopRotationQueue:
    """The rotation queue from the event loop (``AsyncRotationQueue``): the pending marker is claimed by a
    script (with the request's replay mark), and only a claim that is ours goes to a thread, to be
    recorded and published."""

    def __init__(self, queue: CeleryRotationQueue, in_thread: Callable[..., Awaitable[Any]],
                 guard: ReplayGuard) -> None:
        self.queue, self.in_thread, self.guard = queue, in_thread, guard

    async def claim(self, cluster: str, cert_name: str) -> Claim:
        queue = self.queue
        claim = queue.new_claim(cluster, cert_name)
        # one script: a marker left by a rotation that ended is taken over in it (no thread, no round trip)
        holder = await self.guard.eval(*claim_pending_command(cluster, claim.cert_name, claim.rotation_id,
                                                              queue.pending_ttl()))
        if holder:
            raise claim.in_progress(f"rotation {holder}")
        return claim

    async def dispatch(self, claim: Claim, *, trigger: Trigger | str, requested_by: str | None,
                       reply_to: str | None) -> str:
        return await self.in_thread(self.queue.dispatch, claim, trigger=trigger,
                                         requested_by=requested_by, reply_to=reply_to)

    async def release(self, claim: Claim) -> None:
        await self.in_thread(self.queue.release, claim)


class Checked:
    """An async port whose calls write to Redis: the request's replay mark is set before the first one."""

    def __init__(self, port: Any, guard: ReplayGuard) -> None:
        self._port, self._guard = port, guard

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._port, name)
        if not callable(attr):
            return attr  # e.g. Confirmations.ttl

        async def checked(*args: Any, **kwargs: Any) -> Any:
            await self._guard.check()
            return await attr(*args, **kwargs)
        return checked


class ThreadedTasks:
    """``ChatTasks`` for the event loop: Celery's publish is blocking, so it runs in a thread."""

    def __init__(self, tasks: Any, in_thread: Callable[..., Awaitable[Any]]) -> None:
        self.tasks, self.in_thread = tasks, in_thread

    async def check(self, cluster: str, *, requested_by: str, reply_to: str | None) -> str:
        return await self.in_thread(self.tasks.check, cluster, requested_by=requested_by, reply_to=reply_to)

    async def dry_run(self, cluster: str, cert_names: Sequence[str], *, requested_by: str,
                      reply_to: str | None) -> str:
        return await self.in_thread(self.tasks.dry_run, cluster, cert_names, requested_by=requested_by,
                                    reply_to=reply_to)


__all__ = ["Checked", "GuardedAudit", "GuardedMeter", "LoopRotationQueue", "ThreadedTasks"]
