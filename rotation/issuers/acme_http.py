"""Bounded HTTP for the ``acme`` library, which talks through ``requests``.

``BoundedAdapter`` is mounted on the session of every ACME ``ClientNetwork``: each request gets a
total deadline and its answer a size cap (16 MiB by default), so a CA (or anything between) that
sends an endless or endlessly slow answer costs one bounded call, not a worker.

- Before the answer's headers: connect and each read wait at most ``min(timeout, time left)``.
- The body is read in pieces (``read1``), refused by its Content-Length or past ``max_bytes``,
  while a timer shuts the socket down when the deadline passes (a blocked read then returns at
  once); the response handed back to ``acme`` is the bounded copy.
- Compressed answers are refused: we ask for ``identity``, and a decoder could expand one piece
  a thousandfold before anything is counted.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from rotation.bounded_http import MAX_RESPONSE_BYTES, format_size

REQUEST_DEADLINE = 60.0  # seconds for one ACME request, answer included
PIECE = 64 * 1024


class AnswerRefused(requests.exceptions.RequestException):
    """The CA's answer was too large, compressed unasked, or did not finish before the deadline."""


class DeadlinePassed(requests.exceptions.ReadTimeout):
    """The total deadline of one request passed while its answer was being read."""


class BoundedAdapter(HTTPAdapter):
    def __init__(self, *, deadline: float = REQUEST_DEADLINE, max_bytes: int = MAX_RESPONSE_BYTES) -> None:
        super().__init__()
        self.deadline = deadline
        self.max_bytes = max_bytes

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        until = time.monotonic() + self.deadline
        request.headers["Accept-Encoding"] = "identity"
        response = super().send(request, stream=True, timeout=_clipped(timeout, self.deadline), verify=verify,
                                cert=cert, proxies=proxies)
        try:
            body = self._read(response, until)
        except BaseException:
            response.close()
            raise
        response.raw = io.BytesIO(body)  # what requests (and acme) read from now on
        return response

    def _read(self, response: requests.Response, until: float) -> bytes:
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise AnswerRefused(f"a compressed answer (Content-Encoding: {encoding[:40]}) that was not asked for")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise AnswerRefused(f"the answer declares {declared} bytes; at most {format_size(self.max_bytes)} "
                                "is read")
        raw = response.raw
        watchdog = threading.Timer(max(0.0, until - time.monotonic()), _shut, (_socket_of(raw),))
        watchdog.daemon = True
        watchdog.start()
        chunks, size = [], 0
        try:
            while piece := raw.read1(PIECE, decode_content=False):
                size += len(piece)
                if size > self.max_bytes:
                    raise AnswerRefused(f"the answer went on past {format_size(self.max_bytes)}; reading stopped "
                                        "there")
                chunks.append(piece)
        except AnswerRefused:
            raise
        except Exception as exc:
            if time.monotonic() >= until:
                raise DeadlinePassed(f"no complete answer within {self.deadline:g}s") from None
            raise requests.exceptions.ConnectionError(f"the answer broke off: {type(exc).__name__}") from exc
        finally:
            watchdog.cancel()
        if time.monotonic() >= until:  # the watchdog's shutdown looks like the end of the answer
            raise DeadlinePassed(f"no complete answer within {self.deadline:g}s")
        raw.release_conn()
        return b"".join(chunks)


def _clipped(timeout: Any, total: float) -> tuple[float, float]:
    connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    return min(connect or total, total), min(read or total, total)


def _socket_of(raw: Any) -> socket.socket | None:
    connection = getattr(raw, "connection", None)
    return getattr(connection, "sock", None)


def _shut(sock: socket.socket | None) -> None:
    if sock is not None:
        try:  # the plain socket's shutdown: SSLSocket.shutdown would also drop the TLS object under the reader
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass  # already closed: nothing left to stop


__all__ = ["AnswerRefused", "BoundedAdapter", "DeadlinePassed", "REQUEST_DEADLINE"]
