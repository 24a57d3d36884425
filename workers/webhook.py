"""The chat-ops webhook: a Starlette app (run by uvicorn) around ``rotation.chatops``.

POST /chatops/slack               Slack slash command (form; X-Slack-Signature v0)
POST /chatops/slack/interactive   Slack Block Kit button clicks (form ``payload``; same signature)
POST /chatops/mattermost          Mattermost slash command (form; ``Authorization: Token …``)
POST /chatops/generic             any other caller (JSON; X-Timestamp + X-Signature-256 over ``{ts}.{body}``)
GET  /healthz

Each request: size guard (Content-Length first, then while streaming; 413 beyond 64 KB, unread)
-> content type (415) -> authenticate the raw bytes (401) -> replay cache (Redis ``SET NX EX``,
401) -> parse -> ``rotation.chatops.respond`` -> JSON answer. Nothing on this path talks to a
cluster: slow work is queued and answered to the response_url by a worker.

The event loop does what only needs memory and one async Redis call: the replay cache, and
whole commands that read no state (help, usage, ``status`` while its cache is fresh, refusals
of unknown callers), whose audit record is written before the answer leaves. Commands that read
or write the service's state (history, rotations, checks, confirmations) run in a small thread
pool with the synchronous store and queue. No thread hop and no GIL hand-off for the common
case keeps the tail latency of a busy webhook low.
The inventory is read at startup and again when its mtime changes; secrets with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import anyio
import redis
import redis.asyncio
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from rotation.chatops import AllowList, AuditLog, Caller, ChatOps, Command, Confirmations, click, handle, respond
from rotation.chatops.answers import Answer
from rotation.chatops.audit import AsyncAuditLog, AuditBuffer, AuditRecord, Decision
from rotation.chatops.grammar import Help, Status, UsageError, parse
from rotation.chatops.handler import AuditSink
from rotation.chatops.signatures import TOLERANCE, SignatureError, verify_generic, verify_slack, verify_token
from rotation.config import Inventory, load_inventory, resolve_config_path
from rotation.errors import ConfigError, RotationError
from rotation.notify import Notifier, ReplyBudget, host_of
from rotation.service import ServiceContext
from rotation.status import service_status

log = logging.getLogger("rotation.webhook")
T = TypeVar("T")

MAX_BODY = 64 * 1024
ANSWER_WITHIN = 2.5  # seconds: Slack gives up after 3
REPLAY_TTL = 2 * TOLERANCE + 1  # seconds a request's mark is kept: a timestamp may run ahead too
STALE_STATUS = 2.0  # seconds a status past --status-cache may still answer while it is refreshed
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
REPLAY_PREFIX = "rotation:chatops:seen:"


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


class InventoryWatcher:
    """One stat per request; a reload only when the mtime changed. A broken edit keeps the old one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._mtime = self._stat()
        self._snapshot = Snapshot.load(path)  # at startup a bad inventory is fatal

    def _stat(self) -> int:
        try:
            return os.stat(self.path).st_mtime_ns
        except OSError:
            return -1

    def current(self) -> Snapshot:
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


# --- the app -------------------------------------------------------------------------------
class Webhook:
    def __init__(self, config_path: Path | str | None = None, *, clock: Callable[[], float] = time.time,
                 rotations: Any = None, tasks: Any = None, status_cache: float = 1.0, threads: int = 8) -> None:
        self.clock = clock
        # Few threads: the handlers wait on Redis most of the time, and more threads only fight for the GIL.
        self.limiter = anyio.CapacityLimiter(threads)
        self.status_cache = status_cache
        self._status_cache: dict[str | None, tuple[float, dict[str, Any]]] = {}
        self._status_lock = threading.Lock()
        self._refreshing: set[str | None] = set()
        self.watcher = InventoryWatcher(resolve_config_path(config_path))
        self.ctx = _WebhookContext(self.watcher)
        if self.ctx.redis_store is None:
            raise ConfigError("the webhook needs the service's Redis (ROTATION_STORE=redis)")
        # One connection pool for the process, with timeouts that fit inside Slack's 3 s.
        self.redis = redis.Redis.from_url(self.ctx.settings.redis_url, decode_responses=True, socket_timeout=1.0,
                                          socket_connect_timeout=1.0, health_check_interval=30)
        self.ctx.__dict__["redis"] = self.redis  # ServiceContext.redis is a cached_property: use this pool
        self.audit = AuditLog(self.redis)
        self._aredis: redis.asyncio.Redis | None = None  # made on first use, inside the server's loop
        self._async_audit: AsyncAuditLog | None = None
        self.replies = ReplyBudget(self.redis)
        if rotations is None:
            from workers.queue import RotationQueue

            rotations = RotationQueue(self.ctx)
        if tasks is None:
            from workers.chat_tasks import CeleryChatTasks

            tasks = CeleryChatTasks()
        self.rotations, self.tasks = rotations, tasks

    @property
    def aredis(self) -> redis.asyncio.Redis:
        if self._aredis is None:
            self._aredis = redis.asyncio.Redis.from_url(
                self.ctx.settings.redis_url, decode_responses=True, socket_timeout=1.0, socket_connect_timeout=1.0,
                health_check_interval=30)
            self._async_audit = None
        return self._aredis

    @property
    def async_audit(self) -> AsyncAuditLog:
        if self._async_audit is None:
            self._async_audit = AsyncAuditLog(self.aredis)
        return self._async_audit

    async def aclose(self) -> None:
        if self._aredis is not None:
            await self._aredis.aclose()
            self._aredis = None

    async def write_audit(self, records: list[AuditRecord], mark: str | None) -> bool:
        """The records of a request done on the loop, unless ``mark`` shows a replay (then False,
        nothing written). One record and a mark: a single round trip."""
        if mark is not None and len(records) == 1:
            return await self.async_audit.append_once(records[0], mark=mark, ttl=REPLAY_TTL)
        if not await self.first_time(mark):
            return False
        for record in records:
            await self.async_audit.append(record)
        return True

    def env(self, snapshot: Snapshot, audit: AuditSink | None = None, *, on_loop: bool = False) -> ChatOps:
        """``on_loop``: answering on the event loop, where ``status`` may only read the cache."""
        return ChatOps(
            inventory=lambda: snapshot.inventory,
            allow=lambda: snapshot.allow,
            status=(lambda cluster: self._status_cache[cluster][1]) if on_loop else self.status,
            history=self.ctx.store.history,
            rotations=self.rotations,
            tasks=self.tasks,
            confirmations=Confirmations(self.redis, snapshot.inventory.chatops.confirm_ttl),
            audit=audit or self.audit,
            clock=lambda: datetime.fromtimestamp(self.clock(), UTC),
            replies=self.replies,
        )

    def status(self, cluster: str | None) -> dict[str, Any]:
        """``service_status``, shared by the requests of the same ``status_cache`` seconds (a burst of
        status commands costs one read of Redis; the state itself changes at scans and rotations)."""
        if self.status_cache <= 0:
            return service_status(self.ctx, cluster)
        hit = self._status_cache.get(cluster)
        if hit is not None and time.monotonic() - hit[0] < self.status_cache:
            return hit[1]
        # One thread refreshes; meanwhile the others answer with the previous read (stale by at most
        # one refresh) instead of queueing behind it. Only a cold cache makes them wait.
        if not self._status_lock.acquire(blocking=hit is None):
            return hit[1]  # type: ignore[index]
        try:
            hit = self._status_cache.get(cluster)
            if hit is None or time.monotonic() - hit[0] >= self.status_cache:
                hit = (time.monotonic(), service_status(self.ctx, cluster))
                self._status_cache[cluster] = hit
        finally:
            self._status_lock.release()
        return hit[1]

    def status_in_memory(self, cluster: str | None) -> bool:
        """A cached status recent enough to answer from; a stale one is refreshed in the background
        (by one thread) and still used meanwhile, for at most STALE_STATUS seconds more."""
        hit = self._status_cache.get(cluster)
        if self.status_cache <= 0 or hit is None:
            return False  # cold: a handler thread reads Redis and fills the cache
        age = time.monotonic() - hit[0]
        if age >= self.status_cache and cluster not in self._refreshing:
            self._refreshing.add(cluster)
            asyncio.get_running_loop().run_in_executor(None, self._refresh_status, cluster)
        return age < self.status_cache + STALE_STATUS

    def _refresh_status(self, cluster: str | None) -> None:
        try:
            self.status(cluster)
        except Exception as exc:  # noqa: BLE001 - the next request past STALE_STATUS reports it
            log.warning("status of %s not refreshed: %s", cluster or "all clusters", exc)
        finally:
            self._refreshing.discard(cluster)

    @staticmethod
    def replay_mark(kind: str, signature: str) -> str:
        return REPLAY_PREFIX + kind + ":" + hashlib.sha256(signature.encode()).hexdigest()

    async def first_time(self, mark: str | None) -> bool:
        """Replay cache: the first sighting of a signature inside the window wins (None: a scheme
        without timestamps, Mattermost's token, has nothing to check)."""
        return mark is None or bool(await self.aredis.set(mark, "1", nx=True, ex=REPLAY_TTL))

    async def in_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Synchronous Redis and queue work, off the event loop (abandoned, not killed, on timeout)."""
        return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs), limiter=self.limiter,
                                              abandon_on_cancel=True)

    def from_memory(self, command: Command | None) -> bool:
        """Can this be answered without reading the service's state (then: on the event loop)?
        ``None`` is text that did not parse: a usage answer."""
        return command is None or isinstance(command, Help) or (
            isinstance(command, Status) and self.status_in_memory(command.cluster))

    async def answer(self, text: str, caller: Caller, snapshot: Snapshot, reply_url: str | None,
                     mark: str | None) -> Answer | None:
        """The answer to an authenticated command, or None for a replay (then nothing was done).
        From memory: answered first, then the replay check and the audit record in one step
        (nothing else happened, so a replay only loses its answer); otherwise checked first."""
        try:
            command: Command | None = parse(text)
        except UsageError:
            command = None
        # Parsed once here: respond() only for the usage answer (and its audit record).
        act = partial(respond, text) if command is None else partial(handle, command, text=text)
        if self.from_memory(command):
            audit = AuditBuffer()
            answer = act(caller, self.env(snapshot, audit, on_loop=True), reply_url=reply_url)
            return answer if await self.write_audit(audit.records, mark) else None
        if not await self.first_time(mark):
            return None
        return await self.in_thread(act, caller, self.env(snapshot), reply_url=reply_url)

    def reply_url(self, url: str | None, snapshot: Snapshot) -> str | None:
        """Only URLs under the configured prefixes get posts (a forged one would make us an SSRF relay)."""
        if not url:
            return None
        if any(url.startswith(prefix) for prefix in snapshot.inventory.chatops.reply_url_prefixes):
            return url
        log.warning("response_url on %s is not under chatops.reply_url_prefixes: no posts will go there",
                    host_of(url))
        return None

    # --- per platform ------------------------------------------------------------------------------
    async def slack_command(self, body: bytes, headers: dict[str, str]) -> Response:
        snapshot = self.watcher.current()
        mark = self._slack_auth(snapshot, body, headers)
        if isinstance(mark, Response):
            return mark
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=64))
        slack = snapshot.inventory.chatops.slack
        assert slack is not None
        return await self._slash_command("slack", form, snapshot, mark, lambda caller: bool(
            (slack.team_id and caller.team != slack.team_id)
            or (slack.api_app_id and form.get("api_app_id") != slack.api_app_id)))

    async def _slash_command(self, platform: str, form: dict[str, str], snapshot: Snapshot, mark: str | None,
                             foreign: Callable[[Caller], bool]) -> Response:
        """A verified slash command (Slack or Mattermost form): who asks, from where, and the answer."""
        if not form.get("user_id"):
            return _refuse(400, "no user_id")
        caller = Caller(platform, form["user_id"], form.get("team_id") or None, form.get("channel_id") or None,
                        form.get("user_name") or None)
        if foreign(caller):
            return await self._foreign(caller, form.get("text", ""), mark)
        answer = await self.answer(form.get("text", ""), caller, snapshot,
                                   self.reply_url(form.get("response_url"), snapshot), mark)
        return JSONResponse(answer.to_json()) if answer else _replayed(platform)

    async def slack_interaction(self, body: bytes, headers: dict[str, str]) -> Response:
        snapshot = self.watcher.current()
        mark = self._slack_auth(snapshot, body, headers)
        if isinstance(mark, Response):
            return mark
        if not await self.first_time(mark):
            return _replayed("slack")
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=16))
        try:
            payload = json.loads(form.get("payload", ""))
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
        if (slack.team_id and team != slack.team_id) or (
                slack.api_app_id and payload.get("api_app_id") != slack.api_app_id):
            return await self._foreign(caller, f"button {action_id[:40]}", None)  # the mark is set already
        reply_url = self.reply_url(payload.get("response_url"), snapshot)
        answer = await self.in_thread(self._click, action_id, nonce, caller, snapshot, reply_url)
        # Slack reads a click's answer from the response_url, after this acknowledgement.
        task = BackgroundTask(self._post_reply, reply_url, answer) if reply_url else None
        return JSONResponse(answer.to_json(replace_original=True), background=task)

    def _click(self, action_id: str, nonce: str, caller: Caller, snapshot: Snapshot, reply_url: str | None) -> Answer:
        if reply_url:
            self.replies.register(reply_url)
        return click(action_id, nonce, caller, self.env(snapshot), reply_url=reply_url)

    async def mattermost_command(self, body: bytes, headers: dict[str, str]) -> Response:
        snapshot = self.watcher.current()
        if snapshot.mattermost_token is None:
            return _refuse(404, "mattermost is not configured")
        try:
            verify_token(snapshot.mattermost_token, headers.get("authorization"))
        except SignatureError as exc:
            log.warning("mattermost request refused: %s", exc.message)
            return _refuse(401, "not authenticated")
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=64))
        mattermost = snapshot.inventory.chatops.mattermost
        return await self._slash_command("mattermost", form, snapshot, None, lambda caller: bool(
            mattermost and mattermost.team_id and caller.team != mattermost.team_id))

    async def generic_command(self, body: bytes, headers: dict[str, str]) -> Response:
        snapshot = self.watcher.current()
        if snapshot.generic_secret is None:
            return _refuse(404, "the generic endpoint is not configured")
        signature = headers.get("x-signature-256")
        try:
            verify_generic(snapshot.generic_secret, headers.get("x-timestamp"), signature, body, now=self.clock())
        except SignatureError as exc:
            log.warning("generic request refused: %s", exc.message)
            return _refuse(401, "not authenticated")
        try:
            data = json.loads(body)
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
                                   self.replay_mark("generic", signature or ""))
        return JSONResponse(answer.to_json()) if answer else _replayed("generic")

    def _slack_auth(self, snapshot: Snapshot, body: bytes, headers: dict[str, str]) -> Response | str:
        """A refusal, or the request's replay mark (checked later, with the audit when possible)."""
        if snapshot.slack_secret is None:
            return _refuse(404, "slack is not configured")
        signature = headers.get("x-slack-signature")
        try:
            verify_slack(snapshot.slack_secret, headers.get("x-slack-request-timestamp"), signature, body,
                         now=self.clock())
        except SignatureError as exc:
            log.warning("slack request refused: %s", exc.message)
            return _refuse(401, "not authenticated")
        return self.replay_mark("slack", signature or "")

    async def _foreign(self, caller: Caller, text: str, mark: str | None) -> Response:
        """Authentic, but from a workspace/team/app this service is not pinned to: refused, audited."""
        reason = "workspace, team or app not allowed"
        if not await self.write_audit([AuditRecord.of(caller, text, Decision.REFUSED, reason,
                                                      datetime.fromtimestamp(self.clock(), UTC))], mark):
            return _replayed(caller.platform)
        return _refuse(403, reason)

    def _post_reply(self, url: str, answer: Answer) -> None:
        Notifier(self.replies, None).reply(url, answer, fallback=False, replace_original=True)


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
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return _refuse(413, f"body over {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(config_path: Path | str | None = None, *, clock: Callable[[], float] = time.time,
               rotations: Any = None, tasks: Any = None, threads: int = 8, status_cache: float = 1.0) -> Starlette:
    """The ASGI app. ``rotations``/``tasks`` default to the Celery queue (tests may pass others)."""
    hook = Webhook(config_path, clock=clock, rotations=rotations, tasks=tasks, status_cache=status_cache,
                   threads=threads)

    def endpoint(handler: Callable[[bytes, dict[str, str]], Awaitable[Response]], media_type: str) -> Callable:
        async def run(request: Request) -> Response:
            body = await _read_body(request, media_type)
            if isinstance(body, Response):
                return body
            headers = {k.lower(): v for k, v in request.headers.items()}
            try:
                with anyio.move_on_after(ANSWER_WITHIN):
                    return await handler(body, headers)
                log.error("%s: no answer after %ss (Redis or the broker is slow)", request.url.path, ANSWER_WITHIN)
                return JSONResponse(Answer(":hourglass: the service is slow to answer; if the command was "
                                           "accepted its result follows (see `history`)").to_json())
            except Exception:  # noqa: BLE001 - the caller gets an answer, the log gets the traceback
                log.exception("%s failed", request.url.path)
                return JSONResponse(Answer(":warning: the service could not complete this command; "
                                           "see the webhook log").to_json(), status_code=500)
        return run

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
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


_SERVE_ENV = "ROTATION_WEBHOOK_SERVE"  # how `serve` hands its options to uvicorn's worker processes


def app_from_env() -> Starlette:
    """uvicorn's factory in each worker process (``--processes`` > 1)."""
    options = json.loads(os.environ[_SERVE_ENV])
    return create_app(options["config_path"], threads=options["threads"], status_cache=options["status_cache"])


def serve(host: str = "127.0.0.1", port: int = 8088, *, config_path: Path | str | None = None,
          log_level: str = "INFO", access_log: bool = False, threads: int = 8, status_cache: float = 1.0,
          processes: int = 1) -> None:
    """Run the app under uvicorn; the handlers run in each process's thread pool. Several processes
    share the port (and the load) when one process's GIL is the limit."""
    import uvicorn

    common = {"host": host, "port": port, "log_config": None, "log_level": log_level.lower(),
              "access_log": access_log, "proxy_headers": False, "server_header": False, "timeout_keep_alive": 30}
    log.info("webhook starting on http://%s:%d (%d process(es))", host, port, processes)
    if processes > 1:
        os.environ[_SERVE_ENV] = json.dumps({"config_path": str(config_path) if config_path else None,
                                             "threads": threads, "status_cache": status_cache})
        uvicorn.run("workers.webhook:app_from_env", factory=True, workers=processes, **common)
        return
    uvicorn.run(create_app(config_path, threads=threads, status_cache=status_cache), **common)


__all__ = ["MAX_BODY", "InventoryWatcher", "Snapshot", "Webhook", "create_app", "serve"]
