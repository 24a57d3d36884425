"""The chat-ops use case: an authenticated caller's text -> an ``Answer``, with the audit record.

Order of decisions for every command: parse (usage answer on failure) -> the caller is on the
allow-list at all -> the caller holds the permission for that cluster name -> the names exist
in the inventory -> (commands that queue work: the caller's rate limit) -> act. Acting is reading
Redis (status, history) or queueing (check, dry run, rotation); nothing here talks to a cluster, so
the webhook can answer within Slack's 3 s.
A rotation of every certificate, or of a cluster marked ``confirm: true``, first issues a
single-use nonce and answers with a button; only redeeming it (re-checked) queues the work.

The use case is a coroutine and its ports are awaited: the webhook runs it on its event loop,
with Redis through ``redis.asyncio`` and only blocking work (Celery's publish, a cold status
read) in threads, so a busy webhook does not pay a thread hop per command.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from rotation.chatops import answers
from rotation.chatops.answers import Answer
from rotation.chatops.audit import AuditRecord, Decision
from rotation.chatops.authz import AllowList, Caller, Permission
from rotation.chatops.confirm import ConfirmationError, Pending
from rotation.chatops.grammar import Check, Command, Confirm, Help, History, Rotate, Status, UsageError, parse, render
from rotation.config import Inventory
from rotation.core.errors import ConfigError, RotationError, RotationInProgress
from rotation.core.model import RotationRecord, Trigger
from rotation.core.targets import TLS_POLICY
from rotation.usecases.queue import Claim

log = logging.getLogger(__name__)


class ChatTasks(Protocol):
    """Chat work that needs the cluster, queued for a worker that posts the answer (workers/)."""

    async def check(self, cluster: str, *, requested_by: str, reply_to: str | None) -> str: ...

    async def dry_run(self, cluster: str, cert_names: Sequence[str], *, requested_by: str,
                      reply_to: str | None) -> str: ...


class AsyncRotationQueue(Protocol):
    """The rotation queue from the event loop, in two steps (the webhook's ``LoopRotationQueue`` over
    ``workers.queue.CeleryRotationQueue``)."""

    async def claim(self, cluster: str, cert_name: str) -> Claim:
        """Reserve (cluster, cert) for a new rotation id, or raise RotationInProgress."""
        ...

    async def dispatch(self, claim: Claim, *, trigger: Trigger | str, requested_by: str | None,
                       reply_to: str | None) -> str:
        """Record and send the claimed rotation; its id. RotationInProgress (the claim is then
        given back) if one is running already."""
        ...

    async def release(self, claim: Claim) -> None: ...


class ConfirmationStore(Protocol):
    """``rotation.chatops.confirm.Confirmations``."""

    ttl: timedelta

    async def issue(self, command: Rotate, caller: Caller, now: datetime) -> str: ...

    async def redeem(self, nonce: str, caller: Caller, now: datetime) -> Pending: ...


class Replies(Protocol):
    """Reply budgets (``rotation.adapters.notify``): a response_url in, the reference that tasks carry out."""

    async def register(self, url: str, *, progress: bool = True) -> str: ...


class Meter(Protocol):
    """The caller's budget of commands that queue work (``chatops.rate_limit``): ``count`` before the
    command's first write, which then raises RateLimited, having written nothing, when the budget is
    spent (the webhook counts inside that write's own script: ``ReplayGuard.limit``)."""

    def count(self, caller: Caller) -> None: ...


class AuditSink(Protocol):
    """Where the audit records go (the webhook: ``rotation.chatops.audit.append_command``)."""

    async def append(self, record: AuditRecord) -> None: ...


@dataclass
class ChatOps:
    """Everything the use case touches, injected (the webhook builds it once)."""

    inventory: Callable[[], Inventory]
    allow: Callable[[], AllowList]
    status: Callable[[str | None], Awaitable[dict[str, Any]]]  # rotation.usecases.status.service_status, bound
    history: Callable[[str, str | None, int], Awaitable[list[RotationRecord]]]  # RecordStore.history
    rotations: AsyncRotationQueue
    tasks: ChatTasks
    confirmations: ConfirmationStore
    audit: AuditSink
    clock: Callable[[], datetime]
    meter: Meter
    replies: Replies | None = None


class _Refused(Exception):
    def __init__(self, reason: str, cluster: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cluster = cluster


@dataclass(frozen=True)
class _Outcome:
    answer: Answer
    decision: str
    reason: str = ""
    cluster: str | None = None
    task_ids: tuple[str, ...] = ()


async def respond(text: str, caller: Caller, env: ChatOps, *, reply_url: str | None = None) -> Answer:
    """Parse and handle the text of a slash command (or a generic caller's ``text``)."""
    try:
        command = parse(text)
    except UsageError as exc:
        await env.audit.append(AuditRecord.of(caller, text, Decision.INVALID, exc.message, env.clock()))
        return answers.usage_answer(exc.answer)
    return await handle(command, caller, env, text=text, reply_url=reply_url)


async def handle(command: Command, caller: Caller, env: ChatOps, *, text: str | None = None,
                 reply_url: str | None = None) -> Answer:
    """Run one parsed command for ``caller``; always returns an answer and leaves an audit record."""
    try:
        outcome = await _dispatch(command, caller, env, reply_url)
    except _Refused as exc:
        outcome = _Outcome(answers.refused(exc.reason), Decision.REFUSED, exc.reason, exc.cluster)
    except RotationError as exc:  # the service's state could not be read or written: say so
        outcome = _Outcome(answers.refused(exc.message), Decision.REFUSED, exc.message)
    await env.audit.append(AuditRecord.of(caller, text if text is not None else render(command), outcome.decision,
                                          outcome.reason, env.clock(), cluster=outcome.cluster,
                                          task_ids=outcome.task_ids))
    log.info("chat %s by %s in %s: %s %s %s", render(command), caller.label, caller.channel or "-",
             outcome.decision, outcome.reason, " ".join(outcome.task_ids))
    return outcome.answer


async def click(action: str, nonce: str, caller: Caller, env: ChatOps, *, reply_url: str | None = None) -> Answer:
    """A button of a confirmation prompt (Slack block_actions)."""
    if action == answers.CANCEL_ACTION:
        try:
            pending = await env.confirmations.redeem(nonce, caller, env.clock())
        except ConfirmationError as exc:
            await env.audit.append(AuditRecord.of(caller, "cancel", Decision.REFUSED, exc.message, env.clock()))
            return answers.refused(exc.message)
        await env.audit.append(AuditRecord.of(caller, f"cancel {render(pending.command)}", Decision.ALLOWED,
                                              "cancelled", env.clock(), cluster=pending.command.cluster))
        return answers.cancelled()
    if action != answers.CONFIRM_ACTION:
        await env.audit.append(AuditRecord.of(caller, f"button {action[:40]}", Decision.INVALID, "unknown button",
                                              env.clock()))
        return answers.refused("unknown button")
    return await handle(Confirm(nonce), caller, env, text="confirm (button)", reply_url=reply_url)


# --- the commands ------------------------------------------------------------------------------
async def _dispatch(command: Command, caller: Caller, env: ChatOps, reply_url: str | None) -> _Outcome:
    allow = env.allow()
    if isinstance(command, Help):
        return _Outcome(answers.help_answer(), Decision.ALLOWED)
    if not any(grant.matches(caller) for grant in allow.grants):
        raise _Refused(f"user {caller.user} is not on the allow-list")
    inventory = env.inventory()
    match command:
        case Status(cluster=None):
            readable = allow.readable(caller, sorted(inventory.clusters))
            if not readable:
                raise _Refused("you may not read any cluster")
            report = await env.status(None)
            rows = [r for r in report["certificates"] if r["cluster"] in readable]
            flying = [f for f in report["in_flight"] if f["cluster"] in readable]
            return _Outcome(answers.status_answer(rows, flying, readable), Decision.ALLOWED)
        case Status(cluster=str(cluster)):
            _may(allow, caller, inventory, cluster, Permission.READ)
            report = await env.status(cluster)
            return _Outcome(answers.status_answer(report["certificates"], report["in_flight"], [cluster]),
                            Decision.ALLOWED, cluster=cluster)
        case History(cluster=cluster, cert=cert):
            _may(allow, caller, inventory, cluster, Permission.READ)
            # with no certificate named, the cluster's TLS policy changes (`policy apply`) are listed too
            names = [str(cert)] if cert else [*_managed(inventory, cluster), TLS_POLICY]
            if cert and str(cert) not in _managed(inventory, cluster):
                raise _Refused(f"{cluster} does not manage {cert}", cluster)
            found = [await env.history(cluster, name, 10) for name in names]
            records = sorted((r for some in found for r in some), key=lambda r: r.started_at, reverse=True)[:10]
            return _Outcome(answers.history_answer(cluster, records), Decision.ALLOWED, cluster=cluster)
        case Check(cluster=cluster):
            _may(allow, caller, inventory, cluster, Permission.READ)
            env.meter.count(caller)
            reply_to = await _registered(env, reply_url, progress=False)
            task_id = await env.tasks.check(cluster, requested_by=caller.label, reply_to=reply_to)
            return _Outcome(answers.check_queued(cluster, task_id, reply_to is not None), Decision.ALLOWED,
                            cluster=cluster, task_ids=(task_id,))
        case Rotate():
            return await _rotate(command, caller, env, inventory, allow, reply_url)
        case Confirm(nonce=nonce):
            env.meter.count(caller)  # before the nonce is redeemed: refused, it can still be clicked later
            try:
                pending = await env.confirmations.redeem(nonce, caller, env.clock())
            except ConfirmationError as exc:
                raise _Refused(exc.message) from None
            return await _queue(pending.command, caller, env, env.inventory(), env.allow(), reply_url)
    raise _Refused("unsupported command")


async def _rotate(command: Rotate, caller: Caller, env: ChatOps, inventory: Inventory, allow: AllowList,
                  reply_url: str | None) -> _Outcome:
    certs = _certs(command, inventory, allow, caller)
    env.meter.count(caller)  # every rotate: a dry run gets a real certificate, a prompt writes a nonce
    if command.dry_run:
        reply_to = await _registered(env, reply_url, progress=False)
        task_id = await env.tasks.dry_run(command.cluster, certs, requested_by=caller.label, reply_to=reply_to)
        return _Outcome(answers.queued(command, [(", ".join(certs), task_id)], [], caller.label, reply_to is not None),
                        Decision.ALLOWED,
                        cluster=command.cluster, task_ids=(task_id,))
    settings = inventory.clusters[command.cluster]
    if command.all or settings.confirm:
        why = "Every certificate of the cluster" if command.all else f"{command.cluster} asks for a confirmation"
        nonce = await env.confirmations.issue(command, caller, env.clock())
        return _Outcome(answers.confirm_prompt(command, certs, nonce, env.confirmations.ttl, why), Decision.CONFIRM,
                        "confirmation required", command.cluster)
    return await _queue(command, caller, env, inventory, allow, reply_url)


async def _queue(command: Rotate, caller: Caller, env: ChatOps, inventory: Inventory, allow: AllowList,
                 reply_url: str | None) -> _Outcome:
    """Queue the rotations (names and permission checked again: a click comes minutes later).
    Each certificate is claimed first: one already in progress is refused before anything else is
    written, and a claim that is not dispatched is given back."""
    certs = _certs(command, inventory, allow, caller)
    claims: list[Claim] = []
    busy: list[str] = []
    for cert in certs:
        try:
            claims.append(await env.rotations.claim(command.cluster, cert))
        except RotationInProgress as exc:
            busy.append(exc.message)
    ids: list[tuple[str, str]] = []
    reply_to = None
    try:
        if claims:
            reply_to = await _registered(env, reply_url, progress=len(certs) == 1)
        while claims:
            claim = claims.pop(0)  # a dispatch that fails gives its claim back itself
            try:
                ids.append((claim.cert_name, await env.rotations.dispatch(
                    claim, trigger=Trigger.CHATOPS, requested_by=caller.label, reply_to=reply_to)))
            except RotationInProgress as exc:
                busy.append(exc.message)
            except RotationError as exc:
                raise _Refused(exc.message, command.cluster) from None
    finally:
        for claim in claims:
            await env.rotations.release(claim)
    decision = Decision.ALLOWED if ids else Decision.REFUSED
    reason = "; ".join(busy) if busy else "queued"
    return _Outcome(answers.queued(command, ids, busy, caller.label, reply_to is not None), decision, reason,
                    command.cluster, tuple(i for _, i in ids))


# --- checks ------------------------------------------------------------------------------------
def _may(allow: AllowList, caller: Caller, inventory: Inventory, cluster: str, permission: Permission) -> None:
    # Permission first: "unknown cluster" only to whoever may act on the name, so a cluster the
    # caller may not see answers exactly like one that does not exist (no oracle of names).
    decision = allow.check(caller, cluster, permission)
    if not decision.allowed:
        raise _Refused(decision.reason, cluster if cluster in inventory.clusters else None)
    if cluster not in inventory.clusters:
        raise _Refused(f"unknown cluster {cluster}")


def _managed(inventory: Inventory, cluster: str) -> list[str]:
    return [str(c) for c in inventory.targets(cluster)]


def _certs(command: Rotate, inventory: Inventory, allow: AllowList, caller: Caller) -> list[str]:
    _may(allow, caller, inventory, command.cluster, Permission.ROTATE)
    if command.all:
        return _managed(inventory, command.cluster)
    names = []
    for cert in command.certs:
        try:
            names.append(str(inventory.plan(command.cluster, cert).cert_name))
        except ConfigError:
            raise _Refused(f"{command.cluster} does not manage {cert}", command.cluster) from None
    return names


async def _registered(env: ChatOps, reply_url: str | None, *, progress: bool) -> str | None:
    """The reply budget's reference for the task (the URL itself never goes into a task)."""
    if reply_url and env.replies is not None:
        return await env.replies.register(reply_url, progress=progress)
    return None


__all__ = ["AuditSink", "ChatOps", "ChatTasks", "ConfirmationStore", "Meter", "Replies", "AsyncRotationQueue", "click",
           "handle", "respond"]
