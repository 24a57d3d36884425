"""The chat-ops webhook: a Starlette app (run by uvicorn) around ``rotation.chatops``.

POST /chatops/slack               Slack slash command (form; X-Slack-Signature v0)
POST /chatops/slack/interactive   Slack Block Kit button clicks (form ``payload``; same signature)
POST /chatops/mattermost          Mattermost slash command (form; ``Authorization: Token …``)
POST /chatops/generic             any other caller (JSON; X-Timestamp + X-Signature-256 over ``{ts}.{body}``)
GET  /healthz

Each request: size guard (Content-Length first, then while streaming; 413 beyond 64 KB, unread)
-> content type (415) -> authenticate the raw bytes (401) -> parse (``rotation.chatops.bodies``:
400 for a malformed or too deep body) -> ``rotation.chatops.respond`` -> JSON answer. Slow
clients, header sizes and the connection count are bounded by the server (``webhook_server``).
The replay cache (``rotation.chatops.replay``: a mark per (timestamp, body), ``SET NX EX``) is
checked by the request's first write to Redis, inside the same script when it is one (the audit
record, a rotation's pending marker): a replay writes nothing and gets 401. Nothing on this path
talks to a cluster: slow work is queued and answered to the response_url by a worker.

Commands run on the event loop (``rotation.chatops.handler`` is async), with Redis through
``redis.asyncio``. Only blocking work goes to a small thread pool: Celery's publish once a
rotation's marker is ours (a refusal "already in progress" needs no thread), a check or dry run,
history, and a status read past its cache. So ``status`` (cached) and a refused ``rotate`` cost
one and two Redis round trips and no thread hop: no GIL hand-off keeps a busy webhook's tail low.
The inventory is read at startup and again when its mtime changes; secrets with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import redis
import redis.asyncio
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from rotation.chatops import AllowList, Caller, ChatOps, Confirmations, click, respond
from rotation.chatops.answers import Answer
from rotation.chatops.audit import AuditRecord, Decision, append_command
from rotation.chatops.bodies import BadBody, parse_form, parse_json
from rotation.chatops.replay import Replayed, ReplayGuard, request_mark
from rotation.chatops.signatures import TOLERANCE, SignatureError, verify_generic, verify_slack, verify_token
from rotation.config import Inventory, load_inventory, resolve_config_path
from rotation.config.reply_urls import admit
from rotation.errors import ConfigError, RotationError
from rotation.model import Trigger
from rotation.notify import AsyncReplyBudget, Notifier, ReplyBudget, host_of
from rotation.redaction import redact_text
from rotation.redis_batch import BatchedRedis
from rotation.redis_store import claim_pending_command
from rotation.service import Claim, ServiceContext
from rotation.status import service_status

log = logging.getLogger("rotation.webhook")
T = TypeVar("T")

MAX_BODY = 64 * 1024
ANSWER_WITHIN = 2.5  # seconds: Slack gives up after 3
REPLAY_TTL = 2 * TOLERANCE + 1  # seconds a request's mark is kept: a timestamp may run ahead too
STALE_STATUS = 2.0  # seconds a status past --status-cache may still answer while it is refreshed
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


# --- the inventory and its secrets, reloaded when the file changes ----------------------------
@dataclass(frozen=True)
class Snapshot:
    inventory: Inventory
    allow: AllowList
    slack_secret: str | None
    mattermost_token: str | None
    generic_secret: str | None

    @classmethod
    def load(cls, path: Path) -> Snapshot:
        inventory = load_inventory(path)
        chat = inventory.chatops
        return cls(
            inventory=inventory,
            allow=AllowList.from_settings(chat.allow),
            slack_secret=chat.slack.signing_secret() if chat.slack else None,
            mattermost_token=chat.mattermost.token() if chat.mattermost else None,
            generic_secret=chat.generic.secret() if chat.generic else None,
        )

    def platforms(self) -> dict[str, bool]:
        """Which chat platforms this inventory enables (each with a secret that passed its checks)."""
        return {"slack": self.slack_secret is not None, "mattermost": self.mattermost_token is not None,
                "generic": self.generic_secret is not None}


class InventoryWatcher:
    """One stat per ``every`` seconds at most (not one per request); a reload only when the mtime
    changed. A broken edit keeps the old one."""

    def __init__(self, path: Path, every: float = 1.0) -> None:
        self.path = path
        self.every = every
        self._lock = threading.Lock()
        self._mtime = self._stat()
        self._next_stat = time.monotonic() + every
        self._snapshot = Snapshot.load(path)  # at startup a bad inventory is fatal

    def _stat(self) -> int:
        try:
            return os.stat(self.path).st_mtime_ns
        except OSError:
            return -1

    def current(self) -> Snapshot:
        now = time.monotonic()
        if now < self._next_stat:
            return self._snapshot
        self._next_stat = now + self.every
        mtime = self._stat()
        if mtime != self._mtime:
            with self._lock:
                if mtime != self._mtime:
                    try:
                        self._snapshot = Snapshot.load(self.path)
                        log.info("inventory %s reloaded", self.path)
                    except RotationError as exc:
                        log.error("inventory %s not reloaded, keeping the previous one: %s", self.path, exc.message)
                    self._mtime = mtime
        return self._snapshot


class _WebhookContext(ServiceContext):
    """The service context, with the watched inventory instead of a re-read per call."""

    def __init__(self, watcher: InventoryWatcher, settings: Any = None) -> None:
        super().__init__(settings, str(watcher.path))
        self.watcher = watcher

    def inventory(self) -> Inventory:
        return self.watcher.current().inventory


class StatusCache:
    """``service_status`` per cluster, shared by the requests of the same ``ttl`` seconds: a burst of
    ``status`` commands costs one read of Redis (the state itself changes at scans and rotations).

    A fresh read answers from memory on the event loop. A stale one is refreshed by one background
    thread and still answers meanwhile, for at most STALE_STATUS seconds more; only a cold (or too
    old) entry makes a request wait for a read, in a thread. ``ttl`` 0: every request reads."""

    def __init__(self, read: Callable[[str | None], dict[str, Any]], ttl: float,
                 in_thread: Callable[..., Awaitable[Any]]) -> None:
        self.read, self.ttl, self.in_thread = read, ttl, in_thread
        self._entries: dict[str | None, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._refreshing: set[str | None] = set()

    async def get(self, cluster: str | None) -> dict[str, Any]:
        hit = self._entries.get(cluster)
        if self.ttl > 0 and hit is not None:
            age = time.monotonic() - hit[0]
            if age < self.ttl:
                return hit[1]
            if age < self.ttl + STALE_STATUS:
                if cluster not in self._refreshing:
                    self._refreshing.add(cluster)
                    asyncio.get_running_loop().run_in_executor(None, self._refresh, cluster)
                return hit[1]
        return await self.in_thread(self.fetch, cluster)

    def fetch(self, cluster: str | None) -> dict[str, Any]:
        """A read, unless one finished while this waited for the lock (one read at a time)."""
        if self.ttl <= 0:
            return self.read(cluster)
        with self._lock:
            hit = self._entries.get(cluster)
            if hit is None or time.monotonic() - hit[0] >= self.ttl:
                hit = (time.monotonic(), self.read(cluster))
                self._entries[cluster] = hit
        return hit[1]

    def _refresh(self, cluster: str | None) -> None:
        try:
            self.fetch(cluster)
        except Exception as exc:  # noqa: BLE001 - the next request past STALE_STATUS reports it
            log.warning("status of %s not refreshed: %s", cluster or "all clusters", redact_text(str(exc)))
        finally:
            self._refreshing.discard(cluster)


# --- the app -------------------------------------------------------------------------------
class Webhook:
    def __init__(self, config_path: Path | str | None = None, *, clock: Callable[[], float] = time.time,
                 status_cache: float = 1.0, threads: int = 8) -> None:
        self.clock = clock
        # Few threads: only blocking calls go there, and more threads would only fight for the GIL.
        self.limiter = anyio.CapacityLimiter(threads)
        self.watcher = InventoryWatcher(resolve_config_path(config_path))
        self.ctx = _WebhookContext(self.watcher)
        if self.ctx.redis_store is None:
            raise ConfigError("the webhook needs the service's Redis (ROTATION_STORE=redis)")
        # One connection pool for the process, with timeouts that fit inside Slack's 3 s.
        self.redis = redis.Redis.from_url(self.ctx.settings.redis_url, decode_responses=True, socket_timeout=1.0,
                                          socket_connect_timeout=1.0, health_check_interval=30)
        self.ctx.__dict__["redis"] = self.redis  # ServiceContext.redis is a cached_property: use this pool
        self._aredis: redis.asyncio.Redis | None = None  # made on first use, inside the server's loop
        self._batched: BatchedRedis | None = None
        self.box = self.ctx.secret_box  # a response_url is stored sealed: no key, no webhook
        self.replies = ReplyBudget(self.redis, self.box)
        # Imported here, not with this module: the Celery app reads its broker from the environment
        # when it is imported, and importing the webhook's parts must not fix it.
        from workers.chat_tasks import CeleryChatTasks
        from workers.queue import RotationQueue

        self.queue = RotationQueue(self.ctx)
        self.tasks = CeleryChatTasks()
        self.status = StatusCache(partial(service_status, self.ctx), status_cache, self.in_thread)

    @property
    def aredis(self) -> redis.asyncio.Redis:
        if self._aredis is None:
            self._aredis = redis.asyncio.Redis.from_url(
                self.ctx.settings.redis_url, decode_responses=True, socket_timeout=1.0, socket_connect_timeout=1.0,
                health_check_interval=30)
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
            history=partial(self.in_thread, self.ctx.store.history),
            rotations=_LoopRotations(self, guard),
            tasks=_Checked(_ThreadedTasks(self.tasks, self.in_thread), guard),
            confirmations=_Checked(Confirmations(self.aredis, snapshot.inventory.chatops.confirm_ttl), guard),
            audit=_GuardedAudit(guard),
            clock=lambda: datetime.fromtimestamp(self.clock(), UTC),
            replies=_Checked(AsyncReplyBudget(self.aredis, self.box), guard),
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
            return _refuse(400, "no user_id")
        caller = Caller(platform, form["user_id"], form.get("team_id") or None, form.get("channel_id") or None,
                        form.get("user_name") or None)
        if foreign(caller):
            return await self._foreign(caller, form.get("text", ""), guard)
        answer = await self.answer(form.get("text", ""), caller, snapshot,
                                   self.reply_url(form.get("response_url"), snapshot), guard)
        return JSONResponse(answer.to_json()) if answer else _replayed(platform)

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
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return _refuse(400, "not a block_actions payload")
        slack = snapshot.inventory.chatops.slack
        assert slack is not None
        caller = Caller("slack", str(user), team, channel, (payload["user"].get("username") or None))
        if slack.foreign(team, payload.get("api_app_id")):
            return await self._foreign(caller, f"button {action_id[:40]}", guard)
        reply_url = self.reply_url(payload.get("response_url"), snapshot)
        env = self.env(snapshot, guard)
        try:
            reply_to = await env.replies.register(reply_url) if reply_url and env.replies else None
            answer = await click(action_id, nonce, caller, env, reply_url=reply_url)
        except Replayed:
            return _replayed("slack")
        # Slack reads a click's answer from the response_url, after this acknowledgement.
        task = BackgroundTask(self._post_reply, reply_to, answer) if reply_to else None
        return JSONResponse(answer.to_json(replace_original=True), background=task)

    async def mattermost_command(self, body: bytes, headers: dict[str, str]) -> Response:
        snapshot = self.watcher.current()
        if snapshot.mattermost_token is None:
            return _refuse(404, "mattermost is not configured")
        try:
            verify_token(snapshot.mattermost_token, headers.get("authorization"))
        except SignatureError as exc:
            log.warning("mattermost request refused: %s", exc.message)
            return _refuse(401, "not authenticated")
        form = parse_form(body, 64)
        mattermost = snapshot.inventory.chatops.mattermost
        return await self._slash_command("mattermost", form, snapshot, self.guard("mattermost", None, body),
                                         lambda caller: bool(mattermost and mattermost.team_id
                                                             and caller.team != mattermost.team_id))

    async def generic_command(self, body: bytes, headers: dict[str, str]) -> Response:
        snapshot = self.watcher.current()
        if snapshot.generic_secret is None:
            return _refuse(404, "the generic endpoint is not configured")
        timestamp = headers.get("x-timestamp")
        try:
            verify_generic(snapshot.generic_secret, timestamp, headers.get("x-signature-256"), body, now=self.clock())
        except SignatureError as exc:
            log.warning("generic request refused: %s", exc.message)
            return _refuse(401, "not authenticated")
        try:
            data = parse_json(body)
            user, text = data["user"], data["text"]
            if not isinstance(user, str) or not user or not isinstance(text, str):
                raise TypeError
            extra = {k: data.get(k) for k in ("team", "channel", "user_name", "response_url")}
            if any(v is not None and not isinstance(v, str) for v in extra.values()):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return _refuse(400, 'body must be {"user": str, "text": str, "team"?, "channel"?, "response_url"?}')
        caller = Caller("generic", user, extra["team"], extra["channel"], extra["user_name"])
        answer = await self.answer(text, caller, snapshot, self.reply_url(extra["response_url"], snapshot),
                                   self.guard("generic", timestamp, body))
        return JSONResponse(answer.to_json()) if answer else _replayed("generic")

    def _slack_auth(self, snapshot: Snapshot, body: bytes, headers: dict[str, str]) -> Response | ReplayGuard:
        """A refusal, or the request's replay guard (its mark is set with the first write)."""
        if snapshot.slack_secret is None:
            return _refuse(404, "slack is not configured")
        timestamp = headers.get("x-slack-request-timestamp")
        try:
            verify_slack(snapshot.slack_secret, timestamp, headers.get("x-slack-signature"), body, now=self.clock())
        except SignatureError as exc:
            log.warning("slack request refused: %s", exc.message)
            return _refuse(401, "not authenticated")
        return self.guard("slack", timestamp, body)

    async def _foreign(self, caller: Caller, text: str, guard: ReplayGuard) -> Response:
        """Authentic, but from a workspace/team/app this service is not pinned to: refused, audited."""
        reason = "workspace, team or app not allowed"
        try:
            await _GuardedAudit(guard).append(AuditRecord.of(caller, text, Decision.REFUSED, reason,
                                                             datetime.fromtimestamp(self.clock(), UTC)))
        except Replayed:
            return _replayed(caller.platform)
        return _refuse(403, reason)

    def _post_reply(self, reply_to: str, answer: Answer) -> None:
        Notifier(self.replies, None).reply(reply_to, answer, fallback=False, replace_original=True)


class _GuardedAudit:
    """The audit sink of one request: the record goes with the replay mark when it is the first write."""

    def __init__(self, guard: ReplayGuard) -> None:
        self.guard = guard

    async def append(self, record: AuditRecord) -> None:
        await self.guard.eval(*append_command(record))


class _LoopRotations:
    """``RotationQueue`` from the event loop: the pending marker is claimed by a script (with the
    request's replay mark), and only a claim that is ours goes to a thread, to be recorded and published."""

    def __init__(self, hook: Webhook, guard: ReplayGuard) -> None:
        self.hook, self.guard = hook, guard

    async def claim(self, cluster: str, cert_name: str) -> Claim:
        queue = self.hook.queue
        claim = queue.new_claim(cluster, cert_name)
        holder = await self.guard.eval(*claim_pending_command(cluster, claim.cert_name, claim.rotation_id,
                                                              queue.pending_ttl()))
        if holder:
            raise claim.in_progress(f"rotation {holder}")
        return claim

    async def dispatch(self, claim: Claim, *, trigger: Trigger | str, requested_by: str | None,
                       reply_to: str | None) -> str:
        return await self.hook.in_thread(self.hook.queue.dispatch, claim, trigger=trigger,
                                         requested_by=requested_by, reply_to=reply_to)

    async def release(self, claim: Claim) -> None:
        await self.hook.in_thread(self.hook.queue.release, claim)


class _Checked:
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


class _ThreadedTasks:
    """``ChatTasks`` for the event loop: Celery's publish is blocking, so it runs in a thread."""

    def __init__(self, tasks: Any, in_thread: Callable[..., Awaitable[Any]]) -> None:
        self.tasks, self.in_thread = tasks, in_thread

    async def check(self, cluster: str, *, requested_by: str, reply_to: str | None) -> str:
        return await self.in_thread(self.tasks.check, cluster, requested_by=requested_by, reply_to=reply_to)

    async def dry_run(self, cluster: str, cert_names: Sequence[str], *, requested_by: str,
                      reply_to: str | None) -> str:
        return await self.in_thread(self.tasks.dry_run, cluster, cert_names, requested_by=requested_by,
                                    reply_to=reply_to)


def _refuse(status: int, message: str) -> Response:
    return PlainTextResponse(message, status_code=status)


def _replayed(platform: str) -> Response:
    log.warning("%s request refused: replay", platform)
    return _refuse(401, "replayed request")


async def _read_body(request: Request, media_type: str) -> bytes | Response:
    """The raw body, at most MAX_BODY bytes: checked on Content-Length first, then while streaming."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            return _refuse(400, "bad Content-Length")
        if int(length) > MAX_BODY:
            return _refuse(413, f"body over {MAX_BODY} bytes")
    given = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if given != media_type:
        return _refuse(415, f"expected {media_type}")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                return _refuse(413, f"body over {MAX_BODY} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # gone before its body was complete (or dropped for being too slow)
        return _refuse(400, "incomplete body")
    return b"".join(chunks)


def create_app(config_path: Path | str | None = None, *, clock: Callable[[], float] = time.time,
               threads: int = 8, status_cache: float = 1.0) -> Starlette:
    """The ASGI app, queueing to Celery through the service's Redis."""
    hook = Webhook(config_path, clock=clock, status_cache=status_cache, threads=threads)

    def endpoint(handler: Callable[[bytes, dict[str, str]], Awaitable[Response]], media_type: str) -> Callable:
        async def run(request: Request) -> Response:
            body = await _read_body(request, media_type)
            if isinstance(body, Response):
                return body
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}
            try:
                async with asyncio.timeout(ANSWER_WITHIN):
                    return await handler(body, headers)
            except TimeoutError:
                log.error("%s: no answer after %ss (Redis or the broker is slow)", request.url.path, ANSWER_WITHIN)
                return JSONResponse(Answer(":hourglass: the service is slow to answer; if the command was "
                                           "accepted its result follows (see `history`)").to_json())
            except BadBody as exc:
                return _refuse(400, str(exc))
            except Exception:  # noqa: BLE001 - the caller gets an answer, the log gets the traceback
                log.exception("%s failed", request.url.path)
                return JSONResponse(Answer(":warning: the service could not complete this command; "
                                           "see the webhook log").to_json(), status_code=500)
        return run

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # What exists once the app is loaded (modules, models, the inventory) lives until the end:
        # out of the collector's way, a full collection scans only what requests made, and its
        # pause (75-90 ms here, about once a second under load) leaves every request in flight.
        gc.collect()
        gc.freeze()
        yield
        await hook.aclose()

    app = Starlette(lifespan=lifespan, routes=[
        Route("/chatops/slack", endpoint(hook.slack_command, FORM), methods=["POST"]),
        Route("/chatops/slack/interactive", endpoint(hook.slack_interaction, FORM), methods=["POST"]),
        Route("/chatops/mattermost", endpoint(hook.mattermost_command, FORM), methods=["POST"]),
        Route("/chatops/generic", endpoint(hook.generic_command, JSON), methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ])
    app.state.webhook = hook
    return app


__all__ = ["MAX_BODY", "InventoryWatcher", "Snapshot", "Webhook", "create_app"]
