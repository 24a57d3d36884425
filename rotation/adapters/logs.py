"""Logging: plain or one JSON object per line, with the rotation id on every line of a rotation.

The id travels in a context variable set by the pipeline, so lines logged by the RS client, the
probe or an issuer during a rotation carry it too, without passing it around.

Both formats print every message as text: credentials in URLs redacted, control characters and
terminal escapes removed, one line per record (a chat user name or an RS answer cannot forge a
log line or drive the reader's terminal).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

from rotation.core.redaction import redact_text
from rotation.core.text import clean

_current: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("rotation_log_context", default=None)
_FIELDS = ("rotation_id", "cluster", "cert_name")


@contextlib.contextmanager
def rotation_context(rotation_id: str, cluster: str, cert_name: str) -> Iterator[None]:
    token = _current.set({"rotation_id": rotation_id, "cluster": cluster, "cert_name": cert_name})
    try:
        yield
    finally:
        _current.reset(token)


class ContextFilter(logging.Filter):
    """Copies the current rotation's id, cluster and certificate onto every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_current.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": safe_message(record),
        }
        for key in (*_FIELDS, "task_id", "task_name"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["error"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg, args = record.msg, record.args
        record.msg, record.args = safe_message(record), None
        try:
            line = redact_text(super().format(record))
        finally:
            record.msg, record.args = msg, args  # other handlers see the record as it was
        rotation_id = getattr(record, "rotation_id", None)
        return f"{line} [rotation {clean(rotation_id)}]" if rotation_id else line


def safe_message(record: logging.LogRecord) -> str:
    """The record's message as one line of plain text with no credentials in it."""
    return clean(redact_text(record.getMessage()))


def configure(level: str = "INFO", fmt: str = "plain") -> None:
    """Install one stderr handler on the root logger (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_rotation", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._rotation = True  # type: ignore[attr-defined]
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         PlainFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise at INFO
