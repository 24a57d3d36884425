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
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import redis
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.chatops.answers import Answer
from rotation.chatops.bodies import BadBody
from rotation.core.clock import Clock
from rotation.core.errors import StoreUnavailable
from workers.webhook.handlers import Webhook, refuse

log = logging.getLogger("rotation.webhook")

MAX_BODY = 64 * 1024
ANSWER_WITHIN = 2.5  # seconds: Slack gives up after 3
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


async def _read_body(request: Request, media_type: str) -> bytes | Response:
    """The raw body, at most MAX_BODY bytes: checked on Content-Length first, then while streaming."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            return refuse(400, "bad Content-Length")
        if int(length) > MAX_BODY:
            return refuse(413, f"body over {MAX_BODY} bytes")
    given = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if given != media_type:
        return refuse(415, f"expected {media_type}")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                return refuse(413, f"body over {MAX_BODY} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # gone before its body was complete (or dropped for being too slow)
        return refuse(400, "incomplete body")
    return b"".join(chunks)


def create_app(config_path: Path | str | None = None, *, clock: Clock = SYSTEM_CLOCK,
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
                return refuse(400, str(exc))
            except (redis.ConnectionError, redis.TimeoutError, StoreUnavailable) as exc:
                # an outage, not a bug: one log line, and the caller reads it in the chat (a chat platform
                # shows its own error for a non-200 answer, not ours)
                log.error("%s: Redis is unreachable (%s)", request.url.path, exc)
                return JSONResponse(Answer(":warning: the service's Redis is unreachable; try again once it is "
                                           "back (`history` shows whether a rotation was queued)").to_json())
            except redis.ReadOnlyError as exc:  # a failover left ROTATION_REDIS_URL on a replica
                log.error("%s: Redis is a read-only replica (%s)", request.url.path, exc)
                return JSONResponse(Answer(":warning: the service's Redis is a read-only replica: nothing can be "
                                           "queued or confirmed until ROTATION_REDIS_URL reaches the master").to_json())
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


__all__ = ["ANSWER_WITHIN", "MAX_BODY", "create_app"]
