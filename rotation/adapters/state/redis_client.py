"""The service's Redis client: connection failures become one clear error naming the URL (password
redacted), translated here once for every command and pipeline."""

from __future__ import annotations

import re
from typing import Any

import redis
import redis.client

from rotation.config.redis_url import is_sentinel, parse_sentinel_url, redacted
from rotation.core.errors import ConfigError, StoreUnavailable

SUBSCRIBER_TIMEOUT = 1.0  # seconds for a pub/sub connection to connect or send (``_Client.subscriber``)


class RedisUnavailable(StoreUnavailable, redis.ConnectionError):
    """Redis cannot be reached: a RotationError for the entry points (one line, exit 2) and still a
    ``redis.ConnectionError`` for code that retries on those."""


def _unavailable(url: str, exc: redis.RedisError) -> RedisUnavailable:
    if isinstance(exc, redis.AuthenticationError):  # it answered: a setting to fix, not a network to look at
        said = str(exc)
        if "HELLO must be called" in said or "NOAUTH" in said or "Authentication required" in said:
            return RedisUnavailable(f"Redis at {url} requires a password: give it in ROTATION_REDIS_URL "
                                    "(redis://[user]:PASSWORD@host:port/db)")
        return RedisUnavailable(f"Redis at {url} refused the password (or user) of ROTATION_REDIS_URL ({said})")
    return RedisUnavailable(f"Redis at {url} is unreachable ({exc})")


def _read_only(url: str, exc: redis.ReadOnlyError) -> RedisUnavailable:
    """A replica (misconfigured URL, or a master demoted by a failover) takes no writes: unavailable to us,
    named as such. Only the server's words are kept: a pipeline's message quotes the command's values."""
    return RedisUnavailable(f"Redis at {url} is a read-only replica: point ROTATION_REDIS_URL at the master "
                            f"({str(exc).rpartition('caused error: ')[2]})")


def _no_such_database(url: str, exc: redis.ResponseError) -> ConfigError | None:
    """The URL names a database the server does not have (SELECT, on every new connection, refused): a
    setting to fix, not a command that failed."""
    if "DB index is out of range" not in str(exc):
        return None
    return ConfigError(f"ROTATION_REDIS_URL: Redis at {url} has no such database ({exc})")


def _cannot_write(url: str, exc: redis.ResponseError) -> RedisUnavailable | None:
    """A server that cannot take writes now (a demoted master's READONLY, OOM at maxmemory, MISCONF when its
    snapshots fail) is away for the service as much as one that does not answer: the same error, so that
    after a push the rotation still verifies or rolls back, and its record goes to the journal."""
    if isinstance(exc, redis.exceptions.ReadOnlyError | redis.exceptions.OutOfMemoryError) or \
            re.search(r"(^|caused error: )MISCONF ", str(exc)):
        return RedisUnavailable(f"Redis at {url} cannot take writes ({exc})")
    return None


class _Pipeline(redis.client.Pipeline):
    redacted_url = "redis"

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            return super().execute(raise_on_error)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if isinstance(exc, RedisUnavailable):
                raise
            raise _unavailable(self.redacted_url, exc) from exc
        except redis.ReadOnlyError as exc:
            raise _read_only(self.redacted_url, exc) from exc
        except redis.ResponseError as exc:
            translated = _no_such_database(self.redacted_url, exc) or _cannot_write(self.redacted_url, exc)
            if translated is None:
                raise
            raise translated from exc


class _Client(redis.Redis):
    """The service's Redis client: connection failures become one clear error naming the URL
    (password redacted), translated here once for every command and pipeline."""

    redacted_url = "redis"
    _url = ""  # set by ``connect``: what ``subscriber`` connects to

    def subscriber(self) -> _Client:
        """A client of its own for one pub/sub subscription (``redis_watch``): one try per read or connect
        (no retries, short socket timeouts), so a wait on it ends at its own timeout however Redis fares."""
        return connect(self._url, socket_timeout=SUBSCRIBER_TIMEOUT, socket_connect_timeout=SUBSCRIBER_TIMEOUT,
                       retries=0)

    def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute_command(*args, **options)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if isinstance(exc, RedisUnavailable):
                raise
            raise _unavailable(self.redacted_url, exc) from exc
        except redis.ReadOnlyError as exc:
            raise _read_only(self.redacted_url, exc) from exc
        except redis.ResponseError as exc:
            translated = _no_such_database(self.redacted_url, exc) or _cannot_write(self.redacted_url, exc)
            if translated is None:
                raise
            raise translated from exc

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> _Pipeline:
        pipe = _Pipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.redacted_url = self.redacted_url
        return pipe


def connect(url: str, *, socket_timeout: float = 10, socket_connect_timeout: float = 5,
            retries: int | None = None) -> _Client:
    """The client for ROTATION_REDIS_URL: one server, or the master a set of sentinels names
    (``redis+sentinel://``, ``rotation.config.redis_url``), followed across failovers: a connection to a
    demoted master fails, and the retry asks the sentinels for the new one. ``retries``: how often a
    command is tried again after a connection error (default: redis-py's)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    from redis.sentinel import Sentinel

    options: dict[str, Any] = {"decode_responses": True, "socket_timeout": socket_timeout,
                               "socket_connect_timeout": socket_connect_timeout, "health_check_interval": 30,
                               "retry_on_timeout": True}
    if retries is not None:
        options["retry"] = Retry(NoBackoff(), retries)
    client = _build(url, _Client, Sentinel, options)
    assert isinstance(client, _Client)
    client.redacted_url, client._url = redacted(url), url
    return client


def connect_async(url: str, *, socket_timeout: float = 10, socket_connect_timeout: float = 5) -> Any:
    """``connect``'s asyncio twin (a ``redis.asyncio.Redis``), for the webhook's event loop; make it inside
    the loop that uses it."""
    import redis.asyncio
    from redis.asyncio.sentinel import Sentinel

    class SentinelClient(redis.asyncio.Redis):
        async def aclose(self, close_connection_pool: bool | None = None) -> None:
            await super().aclose(close_connection_pool)
            pool: Any = self.connection_pool  # a SentinelConnectionPool
            for sentinel in pool.sentinel_manager.sentinels:  # the sentinels' connections too
                await sentinel.aclose()

    options: dict[str, Any] = {"decode_responses": True, "socket_timeout": socket_timeout,
                               "socket_connect_timeout": socket_connect_timeout, "health_check_interval": 30}
    return _build(url, SentinelClient if is_sentinel(url) else redis.asyncio.Redis, Sentinel, options)


def _build(url: str, redis_class: Any, sentinel_class: Any, options: dict[str, Any]) -> Any:
    """A ``redis_class`` client for ``url``: from the URL, or the master its sentinels (``sentinel_class``,
    sync or asyncio) name, asked with the same socket timeouts."""
    if not is_sentinel(url):
        try:
            client = redis_class.from_url(url, **options)
            if "?" in url:  # query options are checked only when a connection is made (~3 ms at start-up): here
                pool = client.connection_pool
                pool.connection_class(**pool.connection_kwargs)  # (connects not)
            return client
        except (ValueError, TypeError, redis.RedisError) as exc:  # before any connection: a bad setting, exit 2
            raise ConfigError(f"ROTATION_REDIS_URL: {redacted(url)} is not a usable Redis URL "
                              f"({_without_credentials(str(exc), url)})") from None
    target = parse_sentinel_url(url)
    sentinels = sentinel_class(list(target.sentinels), socket_timeout=options["socket_timeout"],
                               socket_connect_timeout=options["socket_connect_timeout"])
    return sentinels.master_for(target.service, redis_class=redis_class, db=target.db, username=target.username,
                                password=target.password, **options)


def _without_credentials(message: str, url: str) -> str:
    """redis-py's MESSAGE about URL with the URL's password hidden (as written and percent-decoded)."""
    from urllib.parse import unquote

    rest = url.partition("//")[2]
    netloc_end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    if rest[:netloc_end] and "@" not in rest[:netloc_end] and "@" in rest[netloc_end:]:
        # a '/', '?' or '#' in the password ended the host part early: what redis-py calls host and port
        # there is the password's beginning, so nothing of its message is shown
        return "a '/', '?', '#' or '@' in the user name or password must be percent-encoded"
    password = rest[:netloc_end].rpartition("@")[0].partition(":")[2]
    for secret in sorted({password, unquote(password)} - {""}, key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


__all__ = ["RedisUnavailable", "connect", "connect_async"]
