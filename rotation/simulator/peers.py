"""The little HTTPS client a simulated cluster uses to talk to its Active-Active peers.

RS's CRDB coordinator reaches every participating cluster over its REST API with the
credentials given at creation; the simulator does the same over real sockets. One request per
connection (``Connection: close``), JSON in and out, the answer bounded in size and time.
Credentials go only into the ``Authorization`` header, never into an error or a log line.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_ANSWER = 1024 * 1024


class PeerError(Exception):
    """The peer could not be asked or refused: ``error_code`` as a CRDB task reports it."""

    def __init__(self, error_code: str, description: str) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description


@dataclass(frozen=True)
class Peer:
    """Where a participating cluster's REST API is and how to log in (never shown)."""

    url: str
    username: str
    password: str
    trusted_ca: str | None = None  # PEM; None: the peer's API certificate is not verified (RS before 8.2)


def _context(trusted_ca: str | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # peers are named by address; trust comes from trusted_ca alone
    if trusted_ca is None:
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cadata=trusted_ca)
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


async def call(peer: Peer, method: str, path: str, body: Any = None, timeout: float = 5.0) -> Any:
    """One JSON request; the decoded answer on 2xx, else :class:`PeerError` with the peer's code."""
    try:
        return await asyncio.wait_for(_call(peer, method, path, body), timeout)
    except TimeoutError as exc:
        raise PeerError("peer_timeout", f"{peer.url} did not answer {method} {path} within {timeout:g}s") from exc
    except ssl.SSLCertVerificationError as exc:
        raise PeerError("peer_not_trusted",
                        f"{peer.url}: API certificate not trusted ({exc.verify_message})") from exc
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        raise PeerError("peer_unreachable", f"{peer.url} unreachable: {type(exc).__name__}: {exc}") from exc


async def _call(peer: Peer, method: str, path: str, body: Any) -> Any:
    split = urlsplit(peer.url)
    if split.scheme != "https" or not split.hostname:
        raise ValueError(f"not an https:// URL: {peer.url!r}")
    host, port = split.hostname, split.port or 9443
    payload = b"" if body is None else json.dumps(body).encode()
    token = base64.b64encode(f"{peer.username}:{peer.password}".encode()).decode()
    head = (f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Basic {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n")
    reader, writer = await asyncio.open_connection(host, port, ssl=_context(peer.trusted_ca),
                                                   server_hostname=host, limit=64 * 1024)
    try:
        writer.write(head.encode("latin-1") + payload)
        await writer.drain()
        status, answer = await _read_answer(reader)
    finally:
        writer.transport.abort()  # one request per connection: no close_notify round trip
    data = json.loads(answer) if answer else None
    if not 200 <= status < 300:
        error = data if isinstance(data, dict) else {}
        raise PeerError(str(error.get("error_code") or f"http_{status}"),
                        f"{peer.url} answered {status} to {method} {path}: "
                        f"{str(error.get('description') or '')[:300]}")
    return data


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.split("\r\n")
    status = int(status_line.split(" ")[1])
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in lines if line)}
    length = int(headers.get("content-length", "0"))
    if length > MAX_ANSWER:
        raise ValueError(f"answer larger than {MAX_ANSWER} bytes")
    return status, await reader.readexactly(length)
