"""Bounded HTTP for the ``acme`` library, which talks through ``requests``.

``BoundedAdapter`` is mounted on the session of every ACME ``ClientNetwork``: each request gets a
total deadline and its answer a size cap (16 MiB by default), so a CA (or anything between) that
sends an endless or endlessly slow answer costs one bounded call, not a worker.

- Time: connect and each read wait at most ``min(timeout, deadline)``, and a watchdog shuts the
  request's socket down once the deadline passes, whatever the request is doing (connecting,
  reading the headers one byte at a time, reading the body): the blocked read returns at once.
  The adapter's pools and connections note the socket each thread's request uses (a reused one
  when taken from the pool, a new one when connected), so the watchdog finds it.
- Size: the body is read in pieces (``read1``), refused by its Content-Length or past
  ``max_bytes``; the response handed back to ``acme`` is the bounded copy. Compressed answers
  are refused: we ask for ``identity``, and a decoder could expand one piece a thousandfold
  before anything is counted.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from rotation.adapters.bounded_http import MAX_RESPONSE_BYTES, format_size

REQUEST_DEADLINE = 60.0  # seconds for one ACME request, answer included
PIECE = 64 * 1024
_current = threading.local()  # .watchdog: the one of the request running on this thread


class AnswerRefused(requests.exceptions.RequestException):
    """The CA's answer was too large or compressed unasked."""


class DeadlinePassed(requests.exceptions.ReadTimeout):
    """The total deadline of one request passed before its answer was complete."""


def _note(sock: socket.socket | None) -> None:
    watchdog = getattr(_current, "watchdog", None)
    if watchdog is not None:
        watchdog.sock = sock


class _TrackedConnection:
    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _note(self.sock)  # type: ignore[attr-defined]


class _TrackedHTTPConnection(_TrackedConnection, HTTPConnection):
    pass


class _TrackedHTTPSConnection(_TrackedConnection, HTTPSConnection):
    pass


class _TrackedPool:
    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)  # type: ignore[misc]
        _note(connection.sock)  # a kept-alive connection's socket; None until a new one connects
        return connection


class _TrackedHTTPPool(_TrackedPool, HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _TrackedHTTPSPool(_TrackedPool, HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


class _Watchdog:
    """Shuts down the socket of the request running on this thread once ``until`` has passed
    (again every 50 ms, in case the socket only appears later), until ``stop``."""

    def __init__(self, until: float) -> None:
        self.until = until
        self.fired = False
        self.sock: socket.socket | None = None  # noted when the request takes or opens a connection
        self._done = threading.Event()
        _current.watchdog = self
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        if self._done.wait(max(0.0, self.until - time.monotonic())):
            return
        self.fired = True
        while True:
            _shut(self.sock)
            if self._done.wait(0.05):
                return

    def stop(self) -> None:
        self._done.set()
        _current.watchdog = None


class BoundedAdapter(HTTPAdapter):
    def __init__(self, *, deadline: float = REQUEST_DEADLINE, max_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self.deadline = deadline
        self.max_bytes = max_bytes
        super().__init__()

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _TrackedHTTPPool, "https": _TrackedHTTPSPool}

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        watchdog = _Watchdog(time.monotonic() + self.deadline)
        request.headers["Accept-Encoding"] = "identity"
        try:
            response = super().send(request, stream=True, timeout=_clipped(timeout, self.deadline), verify=verify,
                                    cert=cert, proxies=proxies)
            try:
                body = self._read(response)
            except BaseException:
                response.close()
                raise
            if watchdog.fired:  # the shutdown looks like the end of the answer: it is not one
                raise DeadlinePassed(f"no complete answer within {self.deadline:g}s")
        except (requests.RequestException, OSError) as exc:
            if watchdog.fired and not isinstance(exc, AnswerRefused):
                raise DeadlinePassed(f"no complete answer within {self.deadline:g}s") from None
            raise
        finally:
            watchdog.stop()
        response.raw.release_conn()
        response.raw = io.BytesIO(body)  # what requests (and acme) read from now on
        return response

    def _read(self, response: requests.Response) -> bytes:
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise AnswerRefused(f"a compressed answer (Content-Encoding: {encoding[:40]}) that was not asked for")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise AnswerRefused(f"the answer declares {declared} bytes; at most {format_size(self.max_bytes)} "
                                "is read")
        chunks, size = [], 0
        try:
            while piece := response.raw.read1(PIECE, decode_content=False):
                size += len(piece)
                if size > self.max_bytes:
                    raise AnswerRefused(f"the answer went on past {format_size(self.max_bytes)}; reading stopped "
                                        "there")
                chunks.append(piece)
        except (AnswerRefused, OSError):
            raise
        except Exception as exc:  # urllib3's own errors for a broken-off answer
            raise requests.exceptions.ConnectionError(f"the answer broke off: {type(exc).__name__}") from exc
        return b"".join(chunks)


def _clipped(timeout: Any, total: float) -> tuple[float, float]:
    connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    return min(connect or total, total), min(read or total, total)


def _shut(sock: socket.socket | None) -> None:
    if sock is not None:
        try:  # the plain socket's shutdown: SSLSocket.shutdown would also drop the TLS object under the reader
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except (OSError, TypeError):
            pass  # already closed (or not a socket): nothing left to stop


__all__ = ["AnswerRefused", "BoundedAdapter", "DeadlinePassed", "REQUEST_DEADLINE"]
