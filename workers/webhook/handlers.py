"""The webhook's handlers, one per platform: authenticate the raw bytes, parse, call the chat use case.

Slack (form, X-Slack-Signature v0), Slack's button clicks, Mattermost (form, ``Authorization:
Token``) and generic callers (JSON, X-Timestamp + X-Signature-256). Authentication comes before
parsing; every write of a request goes through its replay guard (``ports``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import redis
import redis.asyncio
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, PlainTextResponse, Response

from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.adapters.notify import AsyncReplyBudget, Notifier, ReplyBudget, host_of
from rotation.adapters.state.redis_batch import BatchedRedis
from rotation.adapters.state.redis_client import connect, connect_async
from rotation.chatops import Caller, ChatOps, Confirmations, click, respond
from rotation.chatops.answers import Answer
from rotation.chatops.audit import AuditRecord, Decision
from rotation.chatops.bodies import parse_form, parse_json
from rotation.chatops.replay import Replayed, ReplayGuard, request_mark
from rotation.chatops.signatures import TOLERANCE, SignatureError, verify_generic, verify_slack, verify_token
from rotation.config import ServiceSettings, resolve_config_path
from rotation.config.reply_urls import admit
from rotation.core.clock import Clock
from rotation.usecases.context import ServiceContext
from rotation.usecases.status import service_status
from workers.webhook.ports import Checked, GuardedAudit, GuardedMeter, LoopRotationQueue, ThreadedTasks
from workers.webhook.snapshot import InventoryWatcher, Snapshot
from workers.webhook.status_cache import StatusCache

log = logging.getLogger("rotation.webhook")
T = TypeVar("T")

REPLAY_TTL = 2 * TOLERANCE + 1  # seconds a request's mark is kept: a timestamp may run ahead too


class Webhook:
    def __init__(self, config_path: Path | str | None = None, *, clock: Clock = SYSTEM_CLOCK,
                 status_cache: float = 1.0, threads: int = 8) -> None:
        self.clock = clock
        # Few threads: only blocking calls go there, and more threads would only fight for the GIL.
        self.limiter = anyio.CapacityLimiter(threads)
        self.watcher = InventoryWatcher(resolve_config_path(config_path), clock=clock)
        settings = ServiceSettings.from_env()
        settings.require_queue("the webhook")
        # One connection pool for the process, with timeouts that fit inside Slack's 3 s.
        self.redis = connect(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        # The service context, with the watched inventory instead of a re-read per call, and this pool.
        self.ctx = ServiceContext(settings, str(self.watcher.path), inventory=lambda: self.watcher.current().inventory,
                                  redis=self.redis, clock=clock)
        self._aredis: redis.asyncio.Redis | None = None  # made on first use, inside the server's loop
        self._batched: BatchedRedis | None = None
        self.box = self.ctx.secret_box  # a response_url is stored sealed: no key, no webhook
        self.replies = ReplyBudget(self.redis, self.box)
        # Imported here, not with this module: the Celery app reads its broker from the environment
        # when it is imported, and importing the webhook's parts must not fix it.
        from workers.chat_tasks import CeleryChatTasks
        from workers.queue import CeleryRotationQueue

        self.queue = CeleryRotationQueue(self.ctx)
        self.tasks = CeleryChatTasks()
        self.status = StatusCache(partial(service_status, self.ctx), status_cache, self.in_thread, clock)

    @property
    def aredis(self) -> redis.asyncio.Redis:
        if self._aredis is None:
            self._aredis = connect_async(self.ctx.settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        return self._aredis

    @property
    def batched(self) -> BatchedRedis:
        """The hot path's writes (audit records, replay marks, claims), pipelined per turn of the loop."""
        if self._batched is None:
            self._batched = BatchedRedis(self.aredis)
        return self._batched

    async def aclose(self) -> None:
        if self._aredis is not None:
            await self._aredis.aclose()
            self._aredis = self._batched = None

    def guard(self, kind: str, timestamp: str | None, body: bytes) -> ReplayGuard:
        """A request's replay guard, keyed on what its signature covered (``timestamp`` None:
        Mattermost's token, no timestamp to bind, no mark)."""
        mark = request_mark(kind, timestamp, body) if timestamp is not None else None
        return ReplayGuard(self.batched, mark, REPLAY_TTL)

    def env(self, snapshot: Snapshot, guard: ReplayGuard) -> ChatOps:
        """The use case's ports for one request: every write goes through its replay guard."""
        return ChatOps(
            inventory=lambda: snapshot.inventory,
            allow=lambda: snapshot.allow,
            status=self.status.get,
            history=partial(self.in_thread, self.ctx.state.history),
            rotations=LoopRotationQueue(self.queue, self.in_thread, guard),
            tasks=Checked(ThreadedTasks(self.tasks, self.in_thread), guard),
            confirmations=Checked(Confirmations(self.aredis, snapshot.inventory.chatops.confirm_ttl), guard),
            audit=GuardedAudit(guard),
            clock=self.clock.now,
            meter=GuardedMeter(guard, snapshot.inventory.chatops.rate_limit),
            replies=Checked(AsyncReplyBudget(self.aredis, self.box), guard),
        )

    async def in_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Blocking work (Celery's publish, the synchronous store), off the event loop (abandoned, not
        killed, on timeout)."""
        return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs), limiter=self.limiter,
                                              abandon_on_cancel=True)

    async def answer(self, text: str, caller: Caller, snapshot: Snapshot, reply_url: str | None,
                     guard: ReplayGuard) -> Answer | None:
        """The answer to an authenticated command, or None for a replay (then nothing was written)."""
        try:
            return await respond(text, caller, self.env(snapshot, guard), reply_url=reply_url)
        except Replayed:
            return None

    def reply_url(self, url: Any, snapshot: Snapshot) -> str | None:
        """Only URLs under the configured prefixes get posts, compared component by component and
        rebuilt from the checked parts (a forged one would make us an SSRF relay)."""
        if not url or not isinstance(url, str):
            return None
        admitted = admit(url, snapshot.inventory.chatops.reply_url_prefixes)
        if admitted is None:
            log.warning("response_url on %s is not under chatops.reply_url_prefixes: no posts will go there",
                        host_of(url))
        return admitted

    # --- per platform ------------------------------------------------------------------------------
    async def slack_command(self, body: bytes, headers: dict[str, str]) -> Response:
        snapshot = self.watcher.current()
        guard = self._slack_auth(snapshot, body, headers)
        if isinstance(guard, Response):
            return guard
        form = parse_form(body, 64)
        slack = snapshot.inventory.chatops.slack
        assert slack is not None
        return await self._slash_command("slack", form, snapshot, guard,
                                         lambda caller: slack.foreign(caller.team, form.get("api_app_id")))

    async def _slash_command(self, platform: str, form: dict[str, str], snapshot: Snapshot, guard: ReplayGuard,
                             foreign: Callable[[Caller], bool]) -> Response:
        """A verified slash command (Slack or Mattermost form): who asks, from where, and the answer."""
        if not form.get("user_id"):
            return refuse(400, "no user_id")
        caller = Caller(platform, form["user_id"], form.get("team_id") or None, form.get("channel_id") or None,
                        form.get("user_name") or None)
        if foreign(caller):
            return await self._foreign(caller, form.get("text", ""), guard)
        answer = await self.answer(form.get("text", ""), caller, snapshot,
                                   self.reply_url(form.get("response_url"), snapshot), guard)
        return JSONResponse(answer.to_json()) if answer else replayed(platform)

    async def slack_interaction(self, body: bytes, headers: dict[str, str]) -> Response:
        snapshot = self.watcher.current()
        guard = self._slack_auth(snapshot, body, headers)
        if isinstance(guard, Response):
            return guard
        form = parse_form(body, 16)
        try:
            payload = parse_json(form.get("payload", ""))
            user = payload["user"]["id"]
            team = (payload.get("team") or {}).get("id") or (payload["user"].get("team_id"))
            channel = (payload.get("channel") or {}).get("id")
            action = payload["actions"][0]
            action_id, nonce = str(action["action_id"]), str(action.get("value") or "")
            user_name = payload["user"].get("username") or None
            # Ids as Slack sends them, strings: another type made the caller's label a TypeError (a 500).
            if any(v is not None and not isinstance(v, str) for v in (team, channel, user_name)):
                raise TypeError
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return refuse(400, "not a block_actions payload")
        slack = snapshot.inventory.chatops.slack
        assert slack is not None
        caller = Caller("slack", str(user), team, channel, user_name)
        if slack.foreign(team, payload.get("api_app_id")):
            return await self._foreign(caller, f"button {action_id[:40]}", guard)
        reply_url = self.reply_url(payload.get("response_url"), snapshot)
        env = self.env(snapshot, guard)
        try:
            reply_to = await env.replies.register(reply_url) if reply_url and env.replies else None
            answer = await click(action_id, nonce, caller, env, reply_url=reply_url)
        except Replayed:
            return replayed("slack")
        # Slack reads a click's answer from the response_url, after this acknowledgement.
        task = BackgroundTask(self._post_reply, reply_to, answer) if reply_to else None
        return JSONResponse(answer.to_json(replace_original=True), background=task)

    async def mattermost_command(self, body: bytes, headers: dict[str, str]) -> Response:
        snapshot = self.watcher.current()
        if snapshot.mattermost_token is None:
            return refuse(404, "mattermost is not configured")
        try:
            verify_token(snapshot.mattermost_token, headers.get("authorization"))
        except SignatureError as exc:
            log.warning("mattermost request refused: %s", exc.message)
            return refuse(401, "not authenticated")
        form = parse_form(body, 64)
        mattermost = snapshot.inventory.chatops.mattermost
        return await self._slash_command("mattermost", form, snapshot, self.guard("mattermost", None, body),
                                         lambda caller: bool(mattermost and mattermost.team_id
                                                             and caller.team != mattermost.team_id))

    async def generic_command(self, body: bytes, headers: dict[str, str]) -> Response:
        snapshot = self.watcher.current()
        guard = self._signed("generic", snapshot.generic_secret, verify_generic, body, headers.get("x-timestamp"),
                             headers.get("x-signature-256"), missing="the generic endpoint is not configured")
        if isinstance(guard, Response):
            return guard
        try:
            data = parse_json(body)
            user, text = data["user"], data["text"]
            if not isinstance(user, str) or not user or not isinstance(text, str):
                raise TypeError
            extra = {k: data.get(k) for k in ("team", "channel", "user_name", "response_url")}
            if any(v is not None and not isinstance(v, str) for v in extra.values()):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return refuse(400, 'body must be {"user": str, "text": str, "team"?, "channel"?, "response_url"?}')
        caller = Caller("generic", user, extra["team"], extra["channel"], extra["user_name"])
        answer = await self.answer(text, caller, snapshot, self.reply_url(extra["response_url"], snapshot), guard)
        return JSONResponse(answer.to_json()) if answer else replayed("generic")

    def _slack_auth(self, snapshot: Snapshot, body: bytes, headers: dict[str, str]) -> Response | ReplayGuard:
        return self._signed("slack", snapshot.slack_secret, verify_slack, body,
                            headers.get("x-slack-request-timestamp"), headers.get("x-slack-signature"),
                            missing="slack is not configured")

    def _signed(self, platform: str, secret: str | None, verify: Callable[..., int], body: bytes,
                timestamp: str | None, signature: str | None, *, missing: str) -> Response | ReplayGuard:
        """A refusal, or the request's replay guard (its mark is set with the first write)."""
        if secret is None:
            return refuse(404, missing)
        try:
            verify(secret, timestamp, signature, body, now=self.clock.now().timestamp())
        except SignatureError as exc:
            log.warning("%s request refused: %s", platform, exc.message)
            return refuse(401, "not authenticated")
        return self.guard(platform, timestamp, body)

    async def _foreign(self, caller: Caller, text: str, guard: ReplayGuard) -> Response:
        """Authentic, but from a workspace/team/app this service is not pinned to: refused, audited."""
        reason = "workspace, team or app not allowed"
        try:
            await GuardedAudit(guard).append(AuditRecord.of(caller, text, Decision.REFUSED, reason,
                                                             self.clock.now()))
        except Replayed:
            return replayed(caller.platform)
        return refuse(403, reason)

    def _post_reply(self, reply_to: str, answer: Answer) -> None:
        Notifier(self.replies, None).reply(reply_to, answer, fallback=False, replace_original=True)


def refuse(status: int, message: str) -> Response:
    return PlainTextResponse(message, status_code=status)


def replayed(platform: str) -> Response:
    log.warning("%s request refused: replay", platform)
    return refuse(401, "replayed request")


__all__ = ["REPLAY_TTL", "Webhook", "refuse", "replayed"]
