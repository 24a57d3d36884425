"""Inbound HTTP on ``http.server`` (the HTTP-01 responder, the metrics endpoint): each connection bounded.

``http.server`` waits on each read for the handler's ``timeout`` (None: for ever) and reads a request
line by line: a client that sends one byte every few seconds, or nothing, holds a thread and a socket
for as long as it likes. ``DeadlineHandler`` gives each connection a total deadline: every read waits
at most for what is left of ``CONNECTION_DEADLINE`` seconds from the accept (a write, for what was left
at the last read); past it the connection is closed. ``CappedServer`` serves at most
``MAX_CONNECTIONS`` connections (threads) at once: one over it is closed as soon as it is accepted.
Sizes stay ``http.server``'s own: a line of at most 64 KiB, at most 100 header fields.
"""

from __future__ import annotations

import io
import socket
import socketserver
import threading
import time
from typing import Any

CONNECTION_DEADLINE = 10.0  # seconds for a whole connection: a request and its answer are a few bytes
MAX_CONNECTIONS = 64  # served at once (a thread each): a CA's validation or a scrape is one or a few


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: socket.socket, until: float, per_read: float | None) -> None:
        self._sock, self._until, self._per_read = sock, until, per_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        left = self._until - time.monotonic()
        if left <= 0:
            raise TimeoutError("the connection's deadline passed")
        self._sock.settimeout(left if self._per_read is None else min(left, self._per_read))
        return self._sock.recv_into(buffer)


class DeadlineHandler(socketserver.StreamRequestHandler):
    """Mix in before an ``http.server`` handler: its reads go through the connection's deadline."""

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket's own file: left open, it would keep the socket from closing
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, time.monotonic() + CONNECTION_DEADLINE,
                                                       self.timeout))

    def handle(self) -> None:
        try:
            super().handle()
        except (TimeoutError, ConnectionError):  # too slow, or gone: closed without a traceback
            self.close_connection = True


class CappedServer(socketserver.ThreadingMixIn):
    """Mix in before a threading ``socketserver`` server: at most ``MAX_CONNECTIONS`` served at once."""

    _served = 0
    _count = threading.Lock()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self._count:
            if self._served >= MAX_CONNECTIONS:
                return False  # socketserver closes it
            self._served += 1
        return True

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._count:
                self._served -= 1


__all__ = ["CONNECTION_DEADLINE", "MAX_CONNECTIONS", "CappedServer", "DeadlineHandler"]
