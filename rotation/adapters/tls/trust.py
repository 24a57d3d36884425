"""Would a TLS client accept this certificate? Asked of OpenSSL itself, by a handshake in memory.

Used before an ``api`` push: the REST client of every later process must still verify the REST
API, or the tool locks itself out. Reimplementing chain building and name matching would only
approximate what the client does; a real handshake between the client's own ``SSLContext`` and a
server context holding the new pair (through ``MemoryBIO``, no socket) gives its exact verdict.
The pair reaches OpenSSL through anonymous memory files (``memfd``): the key never touches disk.
"""

from __future__ import annotations

import contextlib
import functools
import os
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

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


def load_identity(context: ssl.SSLContext, fullchain_pem: str, key: SecretPEM) -> None:
    """Give ``context`` a certificate and key from memory (a server's, or a client's for mTLS login)."""
    with _memory_file(fullchain_pem.encode()) as cert_path, _memory_file(key.reveal().encode()) as key_path:
        context.load_cert_chain(cert_path, key_path)


def _server_context(fullchain_pem: str, key: SecretPEM) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_identity(context, fullchain_pem, key)
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


def _exchange(client: _Side, server: _Side) -> tuple[str | None, str | None]:
    """Run the handshake to its end: (the client's error, the server's error); both None when it completed.
    With TLS 1.3 the client finishes before the server has judged the client's certificate, so the
    server's verdict is awaited too."""
    for _ in range(_ROUNDS):
        for side in (client, server):
            try:
                side.step()
            except ssl.SSLCertVerificationError as exc:
                return _who(side, client, exc.verify_message or str(exc.reason))
            except ssl.SSLError as exc:
                return _who(side, client, f"handshake failed ({exc.reason or exc})")
            side.send_to(server if side is client else client)
        if client.done and server.done:
            return None, None
    return "handshake did not complete", None


def _who(side: _Side, client: _Side, error: str) -> tuple[str | None, str | None]:
    return (error, None) if side is client else (None, error)


@functools.lru_cache(maxsize=2)
def _throwaway_identity(key_type: str) -> tuple[str, SecretPEM]:
    """A self-signed certificate standing in for a server in an in-memory handshake (never a trust anchor)."""
    key = rsa.generate_private_key(65537, 2048) if key_type == "rsa" else ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rotation in-memory check")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime(2000, 1, 1, tzinfo=UTC)).not_valid_after(datetime(9999, 12, 31, tzinfo=UTC))
            .sign(key, hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), SecretPEM(pem)


def client_certificate_error(ca_bundle_pem: str, fullchain_pem: str, key: SecretPEM) -> str | None:
    """Why a server verifying client certificates against ``ca_bundle_pem`` (RS's ``mtls_trusted_ca``)
    would refuse a client presenting ``fullchain_pem``; None when it accepts. OpenSSL's own verdict,
    from a handshake in memory (RS verifies up to a CA in the bundle, as here)."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_identity(server, *_throwaway_identity("ecdsa"))
    server.verify_mode = ssl.CERT_REQUIRED
    try:
        server.load_verify_locations(cadata=ca_bundle_pem)
    except (ssl.SSLError, ValueError) as exc:
        return f"the CA bundle holds no usable CA certificate ({exc})"
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    try:
        load_identity(client, fullchain_pem, key)
    except ssl.SSLError as exc:
        return f"the client certificate and key cannot be used ({exc.reason or exc})"
    client_error, server_error = _exchange(_Side(client, server=False), _Side(server, server=True))
    return server_error or client_error


def policy_error(client: ssl.SSLContext, minimum: str | None, ciphers: str | None, key_type: str) -> str | None:
    """Why a client set up like ``client`` (its TLS versions and TLS 1.2 suites) could not complete a
    handshake with a server holding a ``key_type`` ("rsa" / "ecdsa") certificate, ``minimum`` as its
    lowest TLS version ("1.2", "1.3") and ``ciphers`` as its TLS 1.2 suites; None when it can."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_identity(server, *_throwaway_identity(key_type))
    if minimum in _VERSIONS:
        server.minimum_version = _VERSIONS[minimum]
    if ciphers:
        server.set_ciphers(ciphers)  # ssl.SSLError for a string OpenSSL cannot read: the caller's to judge
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname, probe.verify_mode = False, ssl.CERT_NONE  # the same versions and suites, no trust
    probe.minimum_version, probe.maximum_version = client.minimum_version, client.maximum_version
    suites = [c["name"] for c in client.get_ciphers() if c["protocol"] != "TLSv1.3"]
    if suites:
        probe.set_ciphers(":".join(suites))
    client_error, server_error = _exchange(_Side(probe, server=False), _Side(server, server=True))
    return client_error or server_error


_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}

__all__ = ["client_certificate_error", "handshake_error", "load_identity", "policy_error"]
