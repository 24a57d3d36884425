"""Inbound HTTP on ``http.server`` (the HTTP-01 responder, the metrics endpoint): each connection bounded.

``http.server`` waits on each read for the handler's ``timeout`` (None: for ever) and reads a request
line by line: a client that sends one byte every few seconds, or nothing, holds a thread and a socket
for as long as it likes. ``DeadlineHandler`` gives each connection a total deadline: every read waits
at most for what is left of ``CONNECTION_DEADLINE`` seconds from the accept (a write, for what was left
at the last read); past it the connection is closed. Sizes stay ``http.server``'s own: a line of at
most 64 KiB, at most 100 header fields.
"""

from __future__ import annotations

import io
import socket
import socketserver
import time

CONNECTION_DEADLINE = 10.0  # seconds for a whole connection: a request and its answer are a few bytes


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


__all__ = ["CONNECTION_DEADLINE", "DeadlineHandler"]
