"""Where chat replies may go: ``chatops.reply_url_prefixes``, parsed, and the check of a ``response_url``.

A ``response_url`` comes in the request body, so it is the caller's to choose: checked by
string prefix, ``https://hooks.slack.com@10.0.0.5/x`` passed a prefix without its slash and the
webhook posted to 10.0.0.5. Here both sides are parsed and compared component by component:

- a prefix is ``https://`` + host + optional port + a path ending in ``/`` (no user info, query
  or fragment), refused when the inventory loads otherwise;
- a URL is admitted when its scheme, host and port equal the prefix's (ports made explicit),
  it has no user info and no fragment, its path starts with the prefix's path and holds no
  ``.``/``..`` segment nor an encoded dot, slash or backslash, and it is plain printable ASCII.
  What is posted to is the URL rebuilt from the checked parts, so no other parser reads it.

``http://`` is accepted for loopback hosts only (127.0.0.0/8, ::1, localhost): a local test
receiver; nothing reachable over a network.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

MAX_URL = 2048
_DEFAULT_PORTS = {"https": 443, "http": 80}
_HOST = re.compile(r"(?:[a-z0-9-]{1,63}\.)*[a-z0-9-]{1,63}|\[[0-9a-f:.]+\]")
_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")
_ENCODED = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _split(url: str) -> tuple[SplitResult, str, int]:
    """(parts, host, port) of a plain absolute http(s) URL; ValueError saying what is wrong."""
    if not url.isascii() or not url.isprintable() or " " in url or "\\" in url:
        raise ValueError("only printable ASCII without spaces or backslashes")
    if len(url) > MAX_URL:
        raise ValueError(f"longer than {MAX_URL} characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("must be an https:// URL")
    if "@" in parts.netloc:
        raise ValueError("must not carry user info (user@host)")
    # The host as written in the URL (IPv6 in brackets), so that the rebuilt URL is the same one.
    host = (parts.netloc.rsplit(":", 1)[0] if not parts.netloc.endswith("]") else parts.netloc).lower()
    if not parts.hostname or not _HOST.fullmatch(host):
        raise ValueError("must name a host")
    if scheme == "http" and not _loopback(host):
        raise ValueError("must be an https:// URL (http:// only for a loopback receiver)")
    port = parts.port  # ValueError for a port that is not a number in range
    return parts, host, port if port is not None else _DEFAULT_PORTS[scheme]


def _clean_path(path: str) -> bool:
    segments = path.split("/")
    return (bool(_PATH.fullmatch(path)) and "." not in segments and ".." not in segments
            and not _ENCODED.search(path))


@dataclass(frozen=True)
class ReplyPrefix:
    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, value: object) -> ReplyPrefix:
        """A prefix from the inventory; ValueError (reported with the field) when it is not one."""
        if isinstance(value, ReplyPrefix):
            return value
        if not isinstance(value, str) or not value:
            raise ValueError("a reply URL prefix is a non-empty string such as https://hooks.slack.com/")
        try:
            parts, host, port = _split(value)
        except ValueError as exc:
            raise ValueError(f"{value!r}: {exc}") from None
        if parts.query or parts.fragment or value.endswith(("?", "#")):
            raise ValueError(f"{value!r}: a prefix has no query or fragment")
        if not parts.path.endswith("/") or not _clean_path(parts.path):
            raise ValueError(f"{value!r}: the path must be plain and end with '/' (https://hooks.slack.com/)")
        return cls(parts.scheme.lower(), host, port, parts.path)

    def __str__(self) -> str:
        port = "" if _DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        return f"{self.scheme}://{self.host}{port}{self.path}"

    def admit(self, url: str) -> str | None:
        """The URL to post to (rebuilt from its checked parts) when ``url`` is under this prefix."""
        try:
            parts, host, port = _split(url)
        except ValueError:
            return None
        if (parts.scheme.lower(), host, port) != (self.scheme, self.host, self.port) or parts.fragment:
            return None
        if not parts.path.startswith(self.path) or not _clean_path(parts.path):
            return None
        if parts.query and not _PATH.fullmatch("/" + parts.query):
            return None
        return str(self) + parts.path[len(self.path):] + (f"?{parts.query}" if parts.query else "")


def admit(url: str | None, prefixes: tuple[ReplyPrefix, ...]) -> str | None:
    """The first prefix's rebuilt URL that admits ``url``, else None."""
    if not url:
        return None
    for prefix in prefixes:
        admitted = prefix.admit(url)
        if admitted is not None:
            return admitted
    return None


__all__ = ["ReplyPrefix", "admit"]
