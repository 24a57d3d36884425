"""The one place that makes credential-bearing values printable.

Use :func:`redact_url` wherever a URL from the environment or the inventory (Redis, a
notification webhook, a reply URL) goes into a log line, an error or a table: the password
and, for capability URLs, the path and query are replaced. :func:`redact_text` does the same
for every URL inside free text (a foreign library's error message, a log line): the log
formatters run every line through it, so a password that slipped into a message does not
reach the log.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

REDACTED = "***"
# scheme://userinfo@, up to the netloc's last '@' (as urlsplit reads it: an unquoted '@' in a password)
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s/'\"<>]*)@")
# a password passed as a query parameter (redis-py reads ``?password=`` as well as the userinfo)
_QUERY_PASSWORD = re.compile(r"((?:^|&)password=)[^&]*", re.IGNORECASE)
# the same inside free text (linear: no backtracking over the URL), up to the next parameter or the URL's end
_TEXT_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&\s'\"<>]*", re.IGNORECASE)


def redact_url(url: str, *, keep_path: bool = True) -> str:
    """``redis://:pw@host:6379/0`` -> ``redis://:***@host:6379/0`` (and ``?password=pw`` -> ``?password=***``).

    ``keep_path=False`` also hides the path and query (a bearer URL such as a Slack
    ``response_url`` or an incoming-webhook URL is a secret as a whole; its host is not).
    Never raises: a value that does not parse as a URL is replaced entirely.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return REDACTED
    if not parts.scheme or not host:
        return REDACTED if url else url
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    if parts.username or parts.password:
        user = parts.username or ""
        netloc = (f"{user}:{REDACTED}@" if parts.password is not None else f"{REDACTED}@") + netloc
    path, query = (parts.path, parts.query) if keep_path else (("/" + REDACTED) if parts.path.strip("/") else "", "")
    query = _QUERY_PASSWORD.sub(lambda match: match.group(1) + REDACTED, query)
    return SplitResult(parts.scheme, netloc, path, query, "").geturl()


def redact_text(text: str) -> str:
    """Every ``scheme://user:password@`` in ``text`` -> ``scheme://user:***@`` (a user alone,
    often a token: ``***@``), and a URL's ``password=`` query parameter -> ``password=***``. Text
    without ``://`` is returned as it is, at the cost of one scan."""
    if "://" not in text:
        return text
    text = _USERINFO.sub(_hide_userinfo, text)
    return _TEXT_QUERY_PASSWORD.sub(lambda match: match.group(1) + REDACTED, text)


def _hide_userinfo(match: re.Match[str]) -> str:
    user, colon, _password = match.group("user").partition(":")
    return match.group("scheme") + (f"{user}:{REDACTED}@" if colon else f"{REDACTED}@")


__all__ = ["REDACTED", "redact_text", "redact_url"]
