"""One replication link and the syncer's handshake that decides its status.

A link is an entry of a database's ``replica_sources`` (Replica Of) or ``crdt_sources``
(Active-Active): the remote database endpoint to sync from, the certificate the syncer trusts
there (``server_cert``, a pin: the served certificate must be it or be issued by it), and the
client certificate it presents (``client_cert``/``client_key`` of the source entry, else the
cluster's ``syncer`` certificate). A check is what the syncer does when it reconnects: a real
TCP connection, a TLS handshake presenting the client certificate, ``PING``, ``+PONG``.

Status values follow the docs (``bdb -> replica_sources status``): ``in-sync``, ``syncing``,
``out-of-sync`` with ``last_error`` saying why. The source side's refusal of a client
certificate cannot be read from an alert (the simulator's TLS layer drops the connection
without flushing it), so a connection reset or closed during or right after the handshake,
when a client certificate was offered, is reported as "client certificate refused".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .tls import build_server_context, utcnow

IN_SYNC, SYNCING, OUT_OF_SYNC = "in-sync", "syncing", "out-of-sync"


def pem_digest(pem: str | None) -> str:
    return "" if not pem else hashlib.sha256(pem.strip().encode()).hexdigest()[:16]


@dataclass
class SyncSource:
    """One ``syncer_sources`` object (``replica_sources[]`` or ``crdt_sources[]``)."""

    uid: int
    uri: str
    server_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None  # write-only: never in an answer
    replication_tls_sni: str | None = None
    compression: int = 0
    role: str = "source"  # "source" (Replica Of) or "peer" (Active-Active): wording of last_error
    status: str = SYNCING
    last_error: str = ""
    lag: int = 0
    last_update: str | None = None
    frozen: tuple[str, str] | None = None  # (server_cert, client cert) digests when frozen
    checking: asyncio.Task[None] | None = field(default=None, repr=False)
    check_sequence: int = 0

    @property
    def address(self) -> tuple[str, int]:
        split = urlsplit(self.uri)
        if not split.hostname or not split.port:
            raise ValueError(f"uri {self.uri!r} has no host:port")
        return split.hostname, split.port

    def public(self) -> dict[str, object]:
        body: dict[str, object] = {
            "uid": self.uid, "uri": self.uri, "encryption": self.server_cert is not None,
            "compression": self.compression, "status": self.status, "last_error": self.last_error,
            "lag": self.lag, "last_update": self.last_update, "rdb_size": 0, "rdb_transferred": 0,
        }
        for name in ("server_cert", "client_cert", "replication_tls_sni"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        return body


class ContextCache:
    """TLS contexts built once per certificate combination (building one writes a temp file)."""

    def __init__(self, limit: int = 64) -> None:
        self._contexts: dict[tuple[str, ...], ssl.SSLContext] = {}
        self._limit = limit

    def get(self, key: tuple[str, ...], build: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        context = self._contexts.get(key)
        if context is None:
            if len(self._contexts) >= self._limit:
                self._contexts.clear()
            context = build()
            self._contexts[key] = context
        return context


def client_context(server_cert: str, client_cert: str | None, client_key: str | None) -> ssl.SSLContext:
    """The syncer's side: trust exactly ``server_cert`` (leaf pin or issuer), present the client pair."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # RS pins server_cert; the SNI only selects the endpoint
    context.load_verify_locations(cadata=server_cert)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    if client_cert and client_key:
        fd, path = tempfile.mkstemp(prefix="rs-sim-syncer-", suffix=".pem")  # 0600
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(client_key + ("" if client_key.endswith("\n") else "\n") + client_cert)
            context.load_cert_chain(path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    return context


def mtls_server_context(
    chain_pem: str, key_pem: str, minimum: str, ciphers: str | None, trusted: list[str]
) -> ssl.SSLContext:
    """A database listener that asks for a client certificate (CERT_OPTIONAL) and accepts only
    one issued by, or equal to, an entry of ``trusted`` (leaf entries are anchors: partial chain)."""
    context = build_server_context(chain_pem, key_pem, minimum, ciphers)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(cadata="\n".join(pem.strip() for pem in trusted) + "\n")
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def identity(source: SyncSource, client_pem: str | None) -> tuple[str, str]:
    """What a frozen link remembers: the certificate it pins and the one it presents."""
    return pem_digest(source.server_cert), pem_digest(client_pem)


async def check(source: SyncSource, context: ssl.SSLContext | None, client_pem: str | None, timeout: float) -> None:
    """Reconnect like the syncer and set ``status``/``last_error``/``lag``/``last_update``.

    ``client_pem`` is the certificate the context presents (None: none offered)."""
    started = time.monotonic()
    try:
        error = await asyncio.wait_for(_exchange(source, context, client_pem is not None), timeout)
    except TimeoutError:
        error = f"{source.role} did not answer within {timeout:g}s"
    if error is None and source.frozen is not None:
        if identity(source, client_pem) != source.frozen:
            source.status, source.last_error = SYNCING, "syncer makes no progress (simulated stall)"
            return
    if error is None:
        source.status, source.last_error = IN_SYNC, ""
        source.lag = int((time.monotonic() - started) * 1000)
        source.last_update = utcnow().isoformat()
    else:
        source.status, source.last_error, source.lag = OUT_OF_SYNC, error, 0


async def _exchange(source: SyncSource, context: ssl.SSLContext | None, offered_cert: bool) -> str | None:
    role = source.role
    host, port = source.address
    sni = source.replication_tls_sni or host
    refused = f"client certificate refused by the {role}"
    handshaken = False
    writer: asyncio.StreamWriter | None = None
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=context,
                                                       server_hostname=sni if context else None)
        handshaken = True
        writer.write(b"PING\r\n")
        await writer.drain()
        answer = await reader.readline()
    except ssl.SSLCertVerificationError as exc:
        return f"{role} certificate not trusted ({exc.verify_message})"
    except ConnectionRefusedError:
        return f"{role} unreachable: connection refused at {host}:{port}"
    except (ssl.SSLError, ConnectionResetError, asyncio.IncompleteReadError) as exc:
        if context is not None and offered_cert:
            when = "after" if handshaken else "during"
            return f"{refused} (connection closed {when} the TLS handshake)"
        return f"{role} closed the connection: {exc}"
    except OSError as exc:
        return f"{role} unreachable: {exc.strerror or exc}"
    finally:
        if writer is not None:
            writer.transport.abort()
    if answer.startswith(b"+PONG"):
        return None
    if not answer:
        return (f"{refused} (connection closed after the TLS handshake)" if context is not None and offered_cert
                else f"{role} closed the connection before answering")
    return f"{role} answered {answer[:100].decode('latin-1').strip()!r}"
