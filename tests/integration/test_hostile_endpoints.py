"""Endpoints that answer the TLS probe and the TLS audit with something strange: a certificate that
cannot be read whole, a plaintext answer with no end of line. Each is that endpoint's error, never an
exception that takes the other endpoints' results with it (real sockets, real handshakes)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier
from prometheus_client.registry import CollectorRegistry
from support.cluster import free_loopback_base
from support.processes import wait_for

from rotation.adapters import bounded_server
from rotation.adapters.issuers.acme import http01
from rotation.adapters.issuers.internal_ca import InternalCA
from rotation.adapters.metrics import serve_metrics
from rotation.adapters.tls.audit import AuditOptions, audit_endpoints, audit_many
from rotation.adapters.tls.probe import probe_endpoints
from rotation.core.model import CertName, CertRequest, Endpoint
from rotation.core.tls_drift import AuditTarget


class Listener:
    """A TCP listener on its own 127.x address running ``serve(conn)`` for each connection."""

    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        self.sock = socket.create_server((free_loopback_base(), 0))
        self.host, self.port = self.sock.getsockname()[:2]
        self._serve = serve
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            self._serve(conn)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listeners() -> Iterator[list[Listener]]:
    made: list[Listener] = []
    yield made
    for listener in made:
        listener.close()


def duplicate_extension_identity(tmp_path: Path) -> ssl.SSLContext:
    """A server context whose certificate carries one extension twice (RFC 5280 forbids it; OpenSSL serves it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "duplicate extension")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.UnrecognizedExtension(ObjectIdentifier("1.2.3.4.5"), b"\x05\x00"), critical=False)
            .add_extension(x509.UnrecognizedExtension(ObjectIdentifier("1.2.3.4.6"), b"\x05\x00"), critical=False)
            .sign(key, hashes.SHA256()))
    # the second extension's OID becomes the first's (same length): the signature no longer matters to a probe
    oid_5, oid_6 = b"\x06\x04\x2a\x03\x04\x05", b"\x06\x04\x2a\x03\x04\x06"
    der = cert.public_bytes(serialization.Encoding.DER).replace(oid_6, oid_5)
    (tmp_path / "dup.pem").write_text(ssl.DER_cert_to_PEM_cert(der))
    (tmp_path / "dup-key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "dup.pem", tmp_path / "dup-key.pem")
    return context


def test_a_certificate_with_a_duplicate_extension_is_that_endpoints_error(
    tmp_path: Path, listeners: list[Listener]
) -> None:
    context = duplicate_extension_identity(tmp_path)

    def serve(conn: socket.socket) -> None:
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)

    listeners.append(Listener(serve))
    bad = Endpoint("c", "api", "1", listeners[0].host, listeners[0].port)
    closed = socket.create_server((free_loopback_base(), 0))
    gone = Endpoint("c", "api", "2", *closed.getsockname()[:2])
    closed.close()
    first, second = probe_endpoints([bad, gone], timeout=5)
    assert first.error and "certificate" in first.error, first
    assert second.error and "unreachable" in second.error


NO_HOSTS = {"nul": "127.0.0.1\x00.evil", "long-label": "a" * 64 + ".example", "empty-labels": "..",
            "surrogate": "node\ud800"}


@pytest.mark.parametrize("host", NO_HOSTS.values(), ids=NO_HOSTS.keys())
def test_an_address_that_is_no_host_is_that_endpoints_error(listeners: list[Listener], host: str) -> None:
    """RS answers the node addresses and the database names the probe and the audit dial: one that is no
    host (a NUL, an empty or overlong label) is that endpoint's error, never an exception that takes the
    other endpoints' results with it."""
    listeners.append(Listener(lambda conn: conn.recv(1)))  # accepts, then drops: every handshake refused
    good = AuditTarget("control", "api", "1", listeners[0].host, listeners[0].port)
    targets = [AuditTarget("control", "api", "2", host, 9443), good,
               AuditTarget("control", "api", "3", listeners[0].host, listeners[0].port, host),  # as its SNI
               AuditTarget("sentinel", "discovery", "4", host, 8001)]
    bad_host, seen_good, bad_sni, bad_sentinel = audit_endpoints(
        targets, AuditOptions(timeout=5, scan_ciphers=False, self_test=False))
    for bad in (bad_host, bad_sni, bad_sentinel):
        assert bad.error and bad.error.startswith("unreachable") and "not a host" in bad.error, bad
        assert "\x00" not in bad.error
    assert seen_good.error is None and all(p.accepted is False for p in seen_good.versions), seen_good
    first, second, third = probe_endpoints([
        Endpoint("c", "api", "2", host, 9443), Endpoint("c", "api", "1", listeners[0].host, listeners[0].port),
        Endpoint("c", "api", "3", listeners[0].host, listeners[0].port, host)], timeout=5)
    assert first.error and "not a host" in first.error and third.error and "not a host" in third.error
    assert second.error and "not a host" not in second.error  # refused, like before


def test_a_plaintext_answer_without_an_end_of_line_is_not_a_plaintext_answer(listeners: list[Listener]) -> None:
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        conn.recv(4096)
        while not stop.is_set():  # 64 KiB pieces, never a newline, until the client goes away
            conn.sendall(b"x" * 65536)

    listeners.append(Listener(serve))
    try:
        (seen,) = audit_endpoints([AuditTarget("sentinel", "discovery", "1", listeners[0].host, listeners[0].port)],
                                  AuditOptions(timeout=5, scan_ciphers=False, self_test=False))
    finally:
        stop.set()
    assert seen.plaintext is False


def test_the_http01_responder_keeps_no_connection_once_its_order_ended() -> None:
    # A client that connects to the public HTTP-01 port and sends half a request (or nothing) must
    # not hold a thread and a socket of the worker after the order, for ever.
    with http01.serving(free_loopback_base(), 0) as responder:
        idle = socket.create_connection((responder.address, responder.port))
        idle.sendall(b"GET /.well-known/acme-challenge/")
        answered = socket.create_connection((responder.address, responder.port))
        answered.sendall(b"GET /.well-known/acme-challenge/none HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answered.recv(64).startswith(b"HTTP/1.0 404")
    idle.settimeout(10)
    try:
        assert idle.recv(64) == b"", "the responder kept the half-sent request's connection"
    finally:
        idle.close()
        answered.close()


def _dropped(address: str, port: int, drip: bytes) -> bool:
    """A client that sends ``drip`` one byte at a time (each well within any per-read timeout), then
    nothing: True once the server closed the connection, False if it still holds it after 10 s."""
    with socket.create_connection((address, port)) as sock:
        sock.setblocking(False)
        end = time.monotonic() + 10
        for byte in itertools.chain(drip, itertools.repeat(None)):
            if time.monotonic() > end:
                return False
            if byte is not None:
                try:
                    sock.send(bytes([byte]))
                except OSError:  # reset by the server
                    return True
            if select.select([sock], [], [], 0.05)[0]:
                try:
                    if not sock.recv(65536):
                        return True
                except OSError:
                    return True
    return False


DRIPS = {"idle": b"", "request-line": b"GET /" + b"a" * 10_000,
         "headers": b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: a\r\n" * 1000}


@pytest.mark.parametrize("drip", [DRIPS["request-line"], DRIPS["headers"]], ids=["request-line", "headers"])
def test_the_http01_responder_drops_a_slow_client_while_its_order_is_open(
    drip: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The port is public: a client that sends its request a byte at a time (or nothing) must not hold a
    # thread and a socket of the worker for as long as the order lasts.
    monkeypatch.setattr(bounded_server, "CONNECTION_DEADLINE", 0.5)
    with http01.serving(free_loopback_base(), 0) as responder:
        assert _dropped(responder.address, responder.port, drip)
        with socket.create_connection((responder.address, responder.port)) as answered:
            answered.sendall(b"GET /.well-known/acme-challenge/none HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answered.recv(64).startswith(b"HTTP/1.0 404")  # still serving


@pytest.mark.parametrize("drip", DRIPS.values(), ids=DRIPS.keys())
def test_the_metrics_endpoint_drops_a_slow_client(drip: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    # prometheus_client's server has no timeout at all: a connection that sent nothing held a thread for good.
    monkeypatch.setattr(bounded_server, "CONNECTION_DEADLINE", 0.5)
    server = serve_metrics(0, free_loopback_base(), CollectorRegistry())
    try:
        address, port = server.server_address[:2]
        assert _dropped(address, port, drip)
        with socket.create_connection((address, port)) as scrape:
            scrape.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert scrape.recv(64).startswith(b"HTTP/1.0 200")
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def _http01() -> Iterator[tuple[str, int]]:
    with http01.serving(free_loopback_base(), 0) as responder:
        yield responder.address, responder.port


@contextlib.contextmanager
def _metrics() -> Iterator[tuple[str, int]]:
    server = serve_metrics(0, free_loopback_base(), CollectorRegistry())
    try:
        yield server.server_address[:2]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("serving", [_http01, _metrics], ids=["http01", "metrics"])
def test_the_http01_responder_and_the_metrics_endpoint_serve_a_bounded_number_of_connections(
    serving: Callable[[], contextlib.AbstractContextManager[tuple[str, int]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each connection is a thread: connections that each wait out their deadline must not add up to
    # a thread (and a socket) per connection the world opens.
    monkeypatch.setattr(bounded_server, "CONNECTION_DEADLINE", 60.0)
    monkeypatch.setattr(http01._Handler, "timeout", 60.0)  # nor does its per-read timeout end them
    monkeypatch.setattr(bounded_server, "MAX_CONNECTIONS", 2)
    with serving() as (address, port):
        idle = [socket.create_connection((address, port)) for _ in range(2)]
        try:
            assert _dropped(address, port, b"")  # one over the cap: closed at once
        finally:
            for sock in idle:
                sock.close()
        wait_for(lambda: _answers(address, port), 10, 0.05, what="a connection once the others are gone")


def _answers(address: str, port: int) -> bool:
    with socket.create_connection((address, port)) as sock:
        sock.settimeout(5)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        return sock.recv(64).startswith(b"HTTP/1.0 ")


def _sockets_to(address: tuple[str, int]) -> int:
    """This process's open sockets connected to ``address``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(fd)))
        except OSError:  # not a socket (or gone already)
            continue
        with sock, contextlib.suppress(OSError):
            count += sock.getpeername()[:2] == address
    return count


def test_the_tls_audit_keeps_no_socket_to_an_endpoint_that_reads_nothing_after_the_handshake(
    tmp_path: Path, ca_files: tuple[Path, Path], listeners: list[Listener]
) -> None:
    # The audit closes each handshake with a close_notify and waits for the peer's; a peer that reads
    # nothing kept every socket of the cipher scan open for asyncio's 30 s SSL shutdown timeout, long
    # after the handshake's result was known (a worker's shared loop: hundreds of descriptors per endpoint).
    issued = InternalCA("hostile", *ca_files).issue(CertRequest(cluster="hostile", cert_name=CertName.API,
                                                                hosts=("hostile.test",)))
    (tmp_path / "mute.pem").write_text(issued.fullchain_pem)
    (tmp_path / "mute-key.pem").write_text(issued.key_pem.reveal())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "mute.pem", tmp_path / "mute-key.pem")
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with context.wrap_socket(conn, server_side=True):
            stop.wait(30)  # the handshake done, nothing more is read

    listeners.append(Listener(serve))
    target = AuditTarget("control", "api", "1", listeners[0].host, listeners[0].port)

    async def audit_and_count() -> tuple[list[str], int]:
        (seen,) = await audit_many([target], AuditOptions(timeout=5, scan_ciphers=False, self_test=False))
        return seen.accepted(), _sockets_to((target.host, target.port))

    try:
        accepted, left = asyncio.run(audit_and_count())
    finally:
        stop.set()
    assert "1.2" in accepted and left == 0, (accepted, left)
