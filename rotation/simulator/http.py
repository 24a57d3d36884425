"""A tiny HTTP/1.1 server over asyncio streams (enough for a REST API and two status pages).

Supports: request line + headers, ``Content-Length`` and ``chunked`` bodies up to
:data:`MAX_BODY` bytes, keep-alive (the HTTP/1.1 default) and ``Connection: close``.
Malformed requests get a JSON error body and the connection is closed.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_REASONS = {status.value: status.phrase for status in HTTPStatus}
MAX_BODY = 1024 * 1024
MAX_HEAD = 64 * 1024
IDLE_TIMEOUT = 75.0


class HttpError(Exception):
    """The request could not be read: answer ``status`` and close the connection."""

    def __init__(self, status: int, error_code: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error_code = error_code
        self.description = description


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]  # lower-cased names; a repeated header keeps its last value
    body: bytes = b""
    login: Any = None  # set by the REST API's authentication: who is calling

    @functools.cached_property
    def path(self) -> str:  # read several times per request (faults, routing, counting): parsed once
        return unquote(urlsplit(self.target).path)

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    @property
    def wants_close(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" not in conn
        return "close" in conn


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(status=status, body=json.dumps(data).encode(), headers=dict(headers or {}))

    @classmethod
    def error(cls, status: int, error_code: str, description: str, **headers: str) -> Response:
        return cls.json({"error_code": error_code, "description": description}, status, headers)

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> Response:
        return cls(status=status, body=text.encode(), content_type=content_type)

    def encode(self, close: bool) -> bytes:
        reason = _REASONS.get(self.status, "Unknown")
        lines = [f"HTTP/1.1 {self.status} {reason}", f"Content-Type: {self.content_type}",
                 f"Content-Length: {len(self.body)}", "Server: rs-simulator"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        lines.append("Connection: close" if close else "Connection: keep-alive")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


Handler = Callable[[Request], Awaitable[Response]]


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """One request, or None on a clean EOF between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise HttpError(400, "bad_request", "Incomplete request head") from exc
    except asyncio.LimitOverrunError as exc:
        raise HttpError(431, "headers_too_large", "Request head too large") from exc
    try:
        text = head.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError as exc:
        raise HttpError(400, "bad_request", "Malformed request line") from exc
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(505, "http_version_not_supported", f"Unsupported protocol {version}")
    headers: dict[str, str] = {}
    for line in header_lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, "bad_request", "Malformed header line")
        headers[name.lower()] = value.strip()
    request = Request(method=method.upper(), target=target, version=version, headers=headers)
    request.body = await _read_body(reader, headers)
    return request


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader)
    raw = headers.get("content-length")
    if raw is None:
        return b""
    if not raw.isdigit():
        raise HttpError(400, "bad_request", "Invalid Content-Length")
    length = int(raw)
    if length > MAX_BODY:
        raise HttpError(413, "payload_too_large", f"Request body larger than {MAX_BODY} bytes")
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise HttpError(400, "bad_request", "Request body shorter than Content-Length") from exc


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    try:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return bytes(body)
            if len(body) + size > MAX_BODY:
                raise HttpError(413, "payload_too_large", f"Request body larger than {MAX_BODY} bytes")
            body += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise HttpError(400, "bad_request", "Malformed chunk")
    except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise HttpError(400, "bad_request", "Malformed chunked body") from exc


async def serve_http(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handler: Handler,
    *,
    refuse: Callable[[], bool] = lambda: False,
    idle_timeout: float = IDLE_TIMEOUT,
) -> None:
    """Answer requests on one connection until close, EOF, idle timeout or ``refuse()``.

    ``refuse`` is checked before each request: a node taken down drops its keep-alive clients.
    """
    while True:
        try:
            async with asyncio.timeout(idle_timeout):  # no task per request, unlike wait_for
                request = await read_request(reader)
        except HttpError as exc:
            writer.write(Response.error(exc.status, exc.error_code, exc.description).encode(close=True))
            await writer.drain()
            return
        except TimeoutError:
            return
        if request is None or refuse():
            return
        response = await handler(request)
        close = request.wants_close
        writer.write(response.encode(close=close))
        await writer.drain()
        if close:
            return
