"""Would a TLS client accept this certificate? Asked of OpenSSL itself, by a handshake in memory.

Used before an ``api`` push: the REST client of every later process must still verify the REST
API, or the tool locks itself out. Reimplementing chain building and name matching would only
approximate what the client does; a real handshake between the client's own ``SSLContext`` and a
server context holding the new pair (through ``MemoryBIO``, no socket) gives its exact verdict.
The pair reaches OpenSSL through anonymous memory files (``memfd``): the key never touches disk.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Iterator

from rotation.core.model import SecretPEM

_ROUNDS = 8  # a TLS 1.2 or 1.3 handshake needs at most four flights


@contextlib.contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    fd = os.memfd_create("rotation-trust", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _server_context(fullchain_pem: str, key: SecretPEM) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with _memory_file(fullchain_pem.encode()) as cert_path, _memory_file(key.reveal().encode()) as key_path:
        context.load_cert_chain(cert_path, key_path)
    return context


class _Side:
    """One end of the in-memory connection: its SSLObject and the two BIOs standing in for the wire."""

    def __init__(self, context: ssl.SSLContext, *, server: bool, server_name: str | None = None) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=server,
                                    server_hostname=None if server else server_name)
        self.done = False

    def step(self) -> None:
        """Advance the handshake as far as the bytes received allow."""
        try:
            self.tls.do_handshake()
            self.done = True
        except ssl.SSLWantReadError:
            pass

    def send_to(self, peer: _Side) -> None:
        data = self.outgoing.read()
        if data:
            peer.incoming.write(data)


def handshake_error(client: ssl.SSLContext, fullchain_pem: str, key: SecretPEM, server_name: str | None
                    ) -> str | None:
    """Why a client with ``client`` (its trust, its name check for ``server_name``) would refuse a
    server presenting ``fullchain_pem``; None when it accepts."""
    try:
        server_context = _server_context(fullchain_pem, key)
    except ssl.SSLError as exc:
        return f"the certificate and key cannot be served ({exc.reason or exc})"
    client_side = _Side(client, server=False, server_name=server_name)
    server_side = _Side(server_context, server=True)
    for _ in range(_ROUNDS):
        try:
            client_side.step()
        except ssl.SSLCertVerificationError as exc:
            return exc.verify_message or str(exc.reason)
        except ssl.SSLError as exc:
            return f"handshake failed ({exc.reason or exc})"
        client_side.send_to(server_side)
        with contextlib.suppress(ssl.SSLError):  # a server-side failure shows up as the client's error
            server_side.step()
        server_side.send_to(client_side)
        if client_side.done and server_side.done:
            return None
    return "handshake did not complete"


__all__ = ["handshake_error"]
