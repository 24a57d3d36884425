"""A standalone HTTP-01 responder: ``/.well-known/acme-challenge/<token>`` from memory.

Choice: the responder runs only while an order is open (started by the ACME issuer, stopped
when the order ends), so nothing listens between renewals. Several orders in one process
share one listener per (address, port) through a reference count (``serving``). A second
*process* (another Celery worker on the same host) cannot bind the same port: run HTTP-01
orders from one worker per host, or give each its own port behind the load balancer.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rotation.adapters.bounded_server import CappedServer, DeadlineHandler
from rotation.core.errors import IssuerError

log = logging.getLogger(__name__)

CHALLENGE_PREFIX = "/.well-known/acme-challenge/"
READ_TIMEOUT = 10.0  # seconds one read of a request may wait (a CA's validation request comes at once)


class _Handler(DeadlineHandler, BaseHTTPRequestHandler):
    server: _Server
    server_version = "rotation-http01"
    timeout = READ_TIMEOUT  # each read of a request: the port is public, a client may send nothing
    # (and the whole connection: DeadlineHandler, a client may send one byte at a time)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = None
        if self.path.startswith(CHALLENGE_PREFIX):
            body = self.server.tokens.get(self.path[len(CHALLENGE_PREFIX):])
        if body is None:
            self.send_error(404)
            return
        data = body.encode("ascii")
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base
        log.debug("http-01 %s " + format, self.client_address[0], *args)


class _Server(CappedServer, ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.tokens: dict[str, str] = {}
        self._open: set[socket.socket] = set()  # connections being served: closed with the server
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """The listener, and every connection still open: a client that sent half a request (or nothing)
        keeps no thread and no socket of this process once the order is over."""
        super().server_close()
        with self._open_lock:
            lingering = list(self._open)
        for conn in lingering:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # its handler's read returns: the handler thread ends


class HTTP01Responder:
    """One listener. ``add``/``remove`` key authorizations by token while it runs."""

    def __init__(self, address: str = "0.0.0.0", port: int = 80) -> None:
        self.address = address
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            self._server = _Server((self.address, self.port))
        except OSError as exc:
            raise IssuerError(f"HTTP-01 responder: cannot listen on {self.address}:{self.port} "
                              f"({exc.strerror}); set http01.address/port") from None
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="http01-responder", daemon=True)
        self._thread.start()
        log.info("HTTP-01 responder listening on %s:%d", self.address, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            log.info("HTTP-01 responder on %s:%d stopped", self.address, self.port)

    def add(self, token: str, key_authorization: str) -> None:
        assert self._server is not None, "responder not started"
        self._server.tokens[token] = key_authorization

    def remove(self, token: str) -> None:
        if self._server is not None:
            self._server.tokens.pop(token, None)

    def __enter__(self) -> HTTP01Responder:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


_shared: dict[tuple[str, int], tuple[HTTP01Responder, int]] = {}
_shared_lock = threading.Lock()


@contextmanager
def serving(address: str, port: int) -> Iterator[HTTP01Responder]:
    """The process's responder for (address, port), started on first use, stopped after the last."""
    key = (address, port)
    with _shared_lock:
        responder, users = _shared.get(key, (None, 0))
        if responder is None:
            responder = HTTP01Responder(address, port)
            responder.start()
        _shared[key] = (responder, users + 1)
    try:
        yield responder
    finally:
        with _shared_lock:
            responder, users = _shared[key]
            if users <= 1:
                del _shared[key]
                responder.stop()
            else:
                _shared[key] = (responder, users - 1)


__all__ = ["CHALLENGE_PREFIX", "HTTP01Responder", "serving"]
