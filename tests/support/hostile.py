"""A real HTTPS server that misbehaves on purpose, on its own 127.x address: endless bodies, answers
dripped one byte at a time, compressed answers nobody asked for, redirects. It records what it
sent and whether the client went away, so tests assert structure (the read stopped, the
connection was dropped), never durations."""

from __future__ import annotations

import gzip
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rotation.adapters.issuers.internal_ca import InternalCA
from rotation.core.model import CertName, CertRequest

HOST_NAME = "hostile.test"
CHUNK = b"x" * 65536


@dataclass
class Exchange:
    """One connection as the server saw it."""

    path: str = ""
    sent: int = 0
    peer_gone: threading.Event = field(default_factory=threading.Event)


class HostileServer:
    def __init__(self, address: str, ca_files: tuple[Path, Path], tmp_path: Path, *, tls: bool = True) -> None:
        self.address = address
        self.context: ssl.SSLContext | None = None
        if tls:
            issued = InternalCA("hostile", *ca_files).issue(
                CertRequest(cluster="hostile", cert_name=CertName.API, hosts=(HOST_NAME, address)))
            (tmp_path / "hostile.pem").write_text(issued.fullchain_pem)
            (tmp_path / "hostile-key.pem").write_text(issued.key_pem.reveal())
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(tmp_path / "hostile.pem", tmp_path / "hostile-key.pem")
        self.ca_path = ca_files[0]
        self.listener = socket.create_server((address, 0))
        self.port = self.listener.getsockname()[1]
        self.behaviour: Callable[[socket.socket, Exchange], None] = endless(self)
        self.exchanges: list[Exchange] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'https' if self.context else 'http'}://{self.address}:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        exchange = Exchange()
        self.exchanges.append(exchange)
        try:
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(4096)
                if not data:
                    return
                head += data
            exchange.path = head.split(b" ", 2)[1].decode()
            self.behaviour(conn, exchange)
        except (OSError, ssl.SSLError):
            pass
        finally:
            exchange.peer_gone.set()
            conn.close()

    def send(self, conn: socket.socket, exchange: Exchange, data: bytes) -> None:
        conn.sendall(data)
        exchange.sent += len(data)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()


def endless(server: HostileServer) -> Callable[[socket.socket, Exchange], None]:
    def behave(conn: socket.socket, exchange: Exchange) -> None:
        server.send(conn, exchange, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[")
        while True:  # until the client goes away (OSError)
            server.send(conn, exchange, CHUNK)
    return behave


def drip(server: HostileServer, *, headers_first: bool, interval: float = 0.02) -> Callable:
    """One byte every ``interval`` seconds, forever: of the body (headers sent at once) or of the
    headers themselves. Each read of the client gets a byte well within any per-read timeout."""
    def behave(conn: socket.socket, exchange: Exchange) -> None:
        if headers_first:
            server.send(conn, exchange, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
        else:
            server.send(conn, exchange, b"HTTP/1.1 200 OK\r\nX-Slow: ")
        pause = threading.Event()
        while not pause.wait(interval):
            server.send(conn, exchange, b"a")
    return behave


def gzipped(server: HostileServer) -> Callable:
    body = gzip.compress(b"[" + b"0," * 500_000 + b"0]")  # 1 MB of JSON in about 1 KB

    def behave(conn: socket.socket, exchange: Exchange) -> None:
        server.send(conn, exchange, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip"
                    b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    return behave


def answer(server: HostileServer, status: str, headers: dict[str, str | bytes], body: bytes) -> Callable:
    """One complete answer, exactly as given (header values may be raw bytes: not ASCII, not numbers); the
    connection closes after it, as the answer says."""
    head = b"".join(k.encode() + b": " + (v if isinstance(v, bytes) else v.encode()) + b"\r\n"
                    for k, v in {**headers, "Content-Length": str(len(body)), "Connection": "close"}.items())

    def behave(conn: socket.socket, exchange: Exchange) -> None:
        server.send(conn, exchange, b"HTTP/1.1 " + status.encode() + b"\r\n" + head + b"\r\n" + body)
        conn.settimeout(10)
        while conn.recv(65536):  # the rest of a request body, until the client closes: closing on unread
            pass                 # bytes would reset the connection before the client read the answer
    return behave


def redirect(server: HostileServer, location: str) -> Callable:
    def behave(conn: socket.socket, exchange: Exchange) -> None:
        server.send(conn, exchange, b"HTTP/1.1 302 Found\r\nLocation: " + location.encode()
                    + b"\r\nContent-Length: 0\r\n\r\n")
    return behave


__all__ = ["HOST_NAME", "Exchange", "HostileServer", "answer", "drip", "endless", "gzipped", "redirect"]
