"""``ROTATION_REDIS_URL`` with Redis Sentinel: ``redis+sentinel://[[user]:password@]host:port[,host:port]/service[/db]``.

The sentinels are listed in the host part (port 26379 when left out); ``service`` is the master's name
as the sentinels know it (``sentinel monitor <service> ...``); the credentials are the master's (and
its replicas'): the sentinels themselves are reached without them. Any other URL (``redis://``,
``rediss://``, ``unix://``) is a single server and goes to redis-py and kombu as it is.

Pure: no I/O. Errors name what is wrong, never the password.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from rotation.core.errors import ConfigError

SCHEME = "redis+sentinel://"
SENTINEL_PORT = 26379
ENV = "ROTATION_REDIS_URL"


@dataclass(frozen=True)
class SentinelURL:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def redacted(self) -> str:
        """The URL as it may be shown: the password replaced."""
        userinfo = ""
        if self.password is not None:
            userinfo = f"{quote(self.username or '', safe='')}:***@"
        elif self.username:
            userinfo = f"{quote(self.username, safe='')}@"
        return f"{SCHEME}{userinfo}{_hosts(self.sentinels)}/{self.service}/{self.db}"

    def kombu_url(self) -> str:
        """kombu's and Celery's form: one ``sentinel://`` URL per sentinel, ``;``-separated, each with the
        master's credentials and the database (with ``master_name`` from ``transport_options``)."""
        userinfo = ""
        if self.password is not None or self.username:
            userinfo = f"{quote(self.username or '', safe='')}:{quote(self.password or '', safe='')}@"
        return ";".join(f"sentinel://{userinfo}{_hosts(((host, port),))}/{self.db}" for host, port in self.sentinels)

    def transport_options(self) -> dict[str, Any]:
        return {"master_name": self.service}


def is_sentinel(url: str) -> bool:
    return url.startswith(SCHEME)


def parse_sentinel_url(url: str) -> SentinelURL:
    """``redis+sentinel://...`` -> its parts; ConfigError naming the part that is wrong."""
    if not is_sentinel(url):
        raise ConfigError(f"{ENV}: a Sentinel URL starts with {SCHEME}")
    rest = url[len(SCHEME):]
    netloc, _, path = rest.partition("/")
    if "@" in path:  # a '/' in the credentials: never echo any of it
        raise ConfigError(f"{ENV}: '@' after the first '/': percent-encode '/' and '@' in the user name and password")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    if "?" in hosts or "?" in path or "#" in hosts or "#" in path:  # not parsed: it would be shown as a name
        raise ConfigError(f"{ENV}: a Sentinel URL takes no query or fragment: the password goes before the "
                          f"hosts ({SCHEME}:PASSWORD@host:port/service)")
    sentinels = tuple(_host_port(part) for part in hosts.split(","))
    service, _, db_text = path.strip("/").partition("/")
    if not service:
        raise ConfigError(f"{ENV}: no Sentinel service name: expected {SCHEME}host:port[,host:port]/service[/db]")
    db = 0
    if db_text:
        if not db_text.isdigit():
            raise ConfigError(f"{ENV}: database {db_text!r} is not a number (0, 1, ...)")
        db = int(db_text)
    return SentinelURL(sentinels, unquote(service), db, username, password)


def redacted(url: str) -> str:
    """Any ROTATION_REDIS_URL as it may be shown (password hidden), Sentinel or not."""
    if is_sentinel(url):
        try:
            return parse_sentinel_url(url).redacted()
        except ConfigError:
            return SCHEME + "***"
    from rotation.core.redaction import redact_url

    return redact_url(url)


def celery_connection(url: str) -> tuple[str, dict[str, Any]]:
    """The broker/backend URL for Celery and the transport options it needs in addition."""
    if not is_sentinel(url):
        return _query_credentials_in_userinfo(url), {}
    target = parse_sentinel_url(url)
    return target.kombu_url(), target.transport_options()


def _query_credentials_in_userinfo(url: str) -> str:
    """``?username=``/``?password=`` (read by redis-py) moved into the userinfo, where kombu reads them: kombu
    passes the query on as keyword arguments beside the userinfo's, a TypeError. As in redis-py, the
    userinfo's wins."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = dict(item for item in query if item[0] in ("username", "password"))
    if not given:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user, colon, secret = userinfo.partition(":")
    user = user or quote(given.get("username", ""), safe="")
    secret = secret if colon and secret else quote(given.get("password", ""), safe="")
    rest = urlencode([item for item in query if item[0] not in given])
    userinfo = f"{user}:{secret}@" if secret else f"{user}@"
    return urlunsplit((parts.scheme, userinfo + host, parts.path, rest, parts.fragment))


def _host_port(text: str) -> tuple[str, int]:
    if not text:
        raise ConfigError(f"{ENV}: an empty sentinel address (expected host:port[,host:port])")
    if text.startswith("["):  # [IPv6]:port
        host, _, port_text = text[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ConfigError(f"{ENV}: sentinel address {text!r} has no host")
    if not port_text:
        return host, SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{ENV}: sentinel {host}: port {port_text!r} is not a port (1-65535)")
    return host, int(port_text)


def _hosts(sentinels: tuple[tuple[str, int], ...]) -> str:
    return ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in sentinels)


__all__ = ["SentinelURL", "celery_connection", "is_sentinel", "parse_sentinel_url", "redacted"]
