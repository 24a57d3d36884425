"""The webhook's body parsers, run only on bodies whose signature was verified.

Both are total: they return the parsed body or raise ``BadBody`` (a 400 for the caller), whatever
the bytes; no other exception (a ``RecursionError`` from deeply nested JSON was a 500 and a
traceback in the log).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

MAX_DEPTH = 32  # Slack's interaction payloads nest about 8 deep; ours 2
# A JSON string as a whole (skipped), or one bracket.
_TOKENS = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}]', re.DOTALL)
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")  # the escape of a UTF-16 surrogate


class BadBody(ValueError):
    """The body is not what this endpoint takes (malformed, too deep, too many fields)."""


def parse_form(body: bytes, max_fields: int) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body, as ``dict(parse_qsl(…, keep_blank_values=True))``
    reads it (the last of a repeated name wins) at a fraction of its cost: only the values that
    hold escapes are unquoted. BadBody beyond ``max_fields`` fields."""
    pairs = body.split(b"&")
    if len(pairs) > max_fields:
        raise BadBody(f"more than {max_fields} form fields")
    fields = {}
    for pair in pairs:
        if pair:
            name, _, value = pair.partition(b"=")
            fields[_unquote(name)] = _unquote(value)
    return fields


def _unquote(raw: bytes) -> str:
    if b"%" in raw or b"+" in raw:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def parse_json(body: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """A JSON document nested at most ``max_depth`` deep; BadBody otherwise."""
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if data.count(b"[") + data.count(b"{") > max_depth and _depth(data) > max_depth:
        raise BadBody(f"JSON nested more than {max_depth} deep")
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadBody(f"not JSON ({type(exc).__name__})") from None
    if _SURROGATE.search(data):
        try:  # a lone surrogate ("\ud800" unpaired) is valid JSON, but no answer or log line can encode it
            json.dumps(parsed, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BadBody("a JSON string holds a lone surrogate (not text)") from None
    return parsed


def _depth(data: bytes) -> int:
    """The deepest nesting of brackets outside strings (one regex pass; no recursion)."""
    depth = deepest = 0
    for match in _TOKENS.finditer(data):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


__all__ = ["BadBody", "MAX_DEPTH", "parse_form", "parse_json"]
