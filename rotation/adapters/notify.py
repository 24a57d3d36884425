"""Posting chat messages: replies to a command's ``response_url`` and the notification webhook.

A ``response_url`` (Slack, Mattermost) accepts at most 5 posts within 30 minutes and is itself a
bearer capability: it is never logged (only its host), never stored in clear and never passed in
a task's arguments. The webhook registers it when it acknowledges the command::

    rotation:chatops:reply:<sha256>   hash {posts, progress, url (Fernet, the service's key)},
                                      expires 30 minutes after the command

and hands workers only its reference (the SHA-256); workers read the URL back and spend the budget.
Progress posts only go out while one post is left for the result; a result that cannot go to
the ``response_url`` any more (budget spent, 30 minutes passed) goes to the notification webhook.
Posting never raises: failures are logged and the rotation goes on. A post follows no redirect,
has a total deadline of ``POST_DEADLINE`` seconds (``rotation.adapters.bounded_http``) and reads nothing
of the answer but its status.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import ssl
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from rotation.adapters import bounded_http
from rotation.adapters.secrets import SecretBox
from rotation.core.errors import ConfigError

log = logging.getLogger(__name__)

REPLY_POSTS = 5
REPLY_WINDOW = 30 * 60  # seconds
TIMEOUT = httpx.Timeout(5.0, connect=3.0)
POST_DEADLINE = 8.0  # seconds for a whole post (connect, TLS, request, status line and headers)
_PREFIX = "rotation:chatops:reply:"

# KEYS[1] budget hash; ARGV[1] the most posts allowed so far; ARGV[2] "progress" or "final"
_TAKE = """
if redis.call('exists', KEYS[1]) == 0 then return -1 end
if ARGV[2] == 'progress' and redis.call('hget', KEYS[1], 'progress') ~= '1' then return -2 end
local used = tonumber(redis.call('hget', KEYS[1], 'posts') or '0')
if used >= tonumber(ARGV[1]) then return -3 end
return redis.call('hincrby', KEYS[1], 'posts', 1)
"""


def host_of(url: str | None) -> str:
    """What may be logged of a URL: its host only."""
    try:
        return urlsplit(url or "").hostname or "?"
    except ValueError:
        return "?"


def reply_ref(url: str) -> str:
    """What tasks carry instead of a response_url: the key of its budget."""
    return hashlib.sha256(url.encode()).hexdigest()


class ReplyBudget:
    """The 5 posts / 30 minutes of each response_url, counted in Redis (``decode_responses=True``).
    ``box`` seals the URL (needed to register one, and to read one back)."""

    def __init__(self, client: Any, box: SecretBox | None) -> None:
        self.redis = client
        self.box = box

    def register(self, url: str, *, progress: bool = True) -> str:
        """Start the window when the command is acknowledged (the acknowledgement is not a post);
        returns the reference that tasks carry."""
        pipe = self.redis.pipeline(transaction=True)
        ref = queue_register(pipe, self.box, url, progress=progress)
        pipe.execute()
        return ref

    def url(self, ref: str) -> str | None:
        """The registered URL, while its window lasts."""
        sealed = self.redis.hget(_PREFIX + ref, "url")
        if not sealed or self.box is None:
            return None
        with suppress(ConfigError):  # sealed with a key we no longer hold: as good as expired
            return self.box.decrypt(sealed.encode(), what="response_url").decode()
        return None

    def take(self, ref: str, *, final: bool) -> bool:
        """One post, if the budget allows: progress keeps the last post for the result."""
        limit = REPLY_POSTS if final else REPLY_POSTS - 1
        return int(self.redis.eval(_TAKE, 1, _PREFIX + ref, limit, "final" if final else "progress")) > 0


def queue_register(pipe: Any, box: SecretBox | None, url: str, *, progress: bool) -> str:
    """``register``'s commands, queued on a pipeline (sync or ``redis.asyncio``) for its caller to
    run; returns the reference."""
    if box is None:
        raise ConfigError("replies to chat need the service's encryption key (ROTATION_SECRET_KEY)")
    ref = reply_ref(url)
    key = _PREFIX + ref
    pipe.hsetnx(key, "posts", 0)
    pipe.hset(key, mapping={"progress": 1 if progress else 0, "url": box.encrypt(url.encode()).decode()})
    pipe.expire(key, REPLY_WINDOW)
    return ref


class AsyncReplyBudget:
    """``ReplyBudget.register`` through a ``redis.asyncio`` client (the webhook's event loop)."""

    def __init__(self, client: Any, box: SecretBox) -> None:
        self.redis = client
        self.box = box

    async def register(self, url: str, *, progress: bool = True) -> str:
        pipe = self.redis.pipeline(transaction=True)
        ref = queue_register(pipe, self.box, url, progress=progress)
        await pipe.execute()
        return ref


class Message(Protocol):
    """What a post carries (``rotation.chatops.answers.Answer``)."""

    @property
    def text(self) -> str: ...

    @property
    def blocks(self) -> tuple[dict[str, Any], ...] | None: ...

    def to_json(self, **extra: Any) -> dict[str, Any]: ...


class Notifier:
    """JSON posts (``{"text", "blocks"?, "response_type"?}``) with short timeouts; never raises."""

    def __init__(self, budget: ReplyBudget | None, notify_url: str | None,
                 post: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.budget = budget
        self.notify_url = notify_url
        self._post = post or _http_post

    def _send(self, url: str, body: dict[str, Any], what: str) -> bool:
        try:
            self._post(url, body)
            return True
        except Exception as exc:  # noqa: BLE001 - a chat outage must never break a rotation
            log.warning("%s post to %s failed: %s", what, host_of(url), type(exc).__name__)
            return False

    def notify(self, answer: Message) -> bool:
        """Post to the notification webhook (if one is configured)."""
        if not self.notify_url:
            return False
        return self._send(self.notify_url, {"text": answer.text, **({"blocks": list(answer.blocks)}
                                                                       if answer.blocks else {})}, "notification")

    def reply(self, reply_to: str | None, answer: Message, *, final: bool = True, fallback: bool = True,
              **extra: Any) -> bool:
        """Post to the command's response_url (``reply_to``: its reference) within its budget; a final
        answer that cannot go there goes to the notification webhook when ``fallback``."""
        if reply_to and self.budget is not None:
            try:
                url = self.budget.url(reply_to)
                allowed = url is not None and self.budget.take(reply_to, final=final)
            except Exception as exc:  # noqa: BLE001 - Redis down: do not spend an uncounted post
                log.warning("reply budget unavailable: %s", type(exc).__name__)
                url, allowed = None, False
            if url is None:
                log.info("reply skipped: the command's response_url has expired (30 minutes)")
            elif allowed and self._send(url, answer.to_json(**extra), "reply"):
                return True
            elif not allowed:
                log.info("reply to %s skipped: its 5 posts / 30 minutes are spent", host_of(url))
        if final and fallback:
            return self.notify(answer)
        return False


def _http_post(url: str, body: dict[str, Any]) -> None:
    """One JSON post; only the status is read (a redirect is an error, never followed)."""
    transport = bounded_http.transport(_system_trust(), limits=httpx.Limits(max_connections=1))
    with bounded_http.deadline(POST_DEADLINE), httpx.Client(
        transport=transport, timeout=TIMEOUT, follow_redirects=False, trust_env=False, headers=bounded_http.IDENTITY
    ) as client, client.stream("POST", url, json=body) as response:
        response.raise_for_status()


@functools.cache
def _system_trust() -> ssl.SSLContext:
    return httpx.create_ssl_context()


__all__ = ["AsyncReplyBudget", "Notifier", "ReplyBudget", "host_of", "queue_register",
           "reply_ref"]
