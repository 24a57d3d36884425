"""An ACME CA that issues what Let's Encrypt's ``tlsserver`` profile issues in 2026: serverAuth only, no CN,
no keyEncipherment, no SKI (sheet ``rs-8x-and-public-cas-2026.md`` §1.5).

Pebble 2.4 still adds clientAuth and a CN, so a real HTTPS server on loopback stands in front of it:
every request goes to Pebble as it came, Host header included (Pebble builds every URL it returns from
the Host header, so the directory, orders and certificate URLs all name the front), and a certificate
download (``application/pem-certificate-chain``) comes back re-signed into that shape by the front's own
CA (root -> intermediate), for the same public key and the same names. The ACME protocol, the account,
the challenges and the key the client made are all Pebble's and the real client's.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from support.acme import PebbleServer

PEM_CHAIN = "application/pem-certificate-chain"
NEW_ORDER_PATH = "/order-plz"  # Pebble's newOrder
MAX_BODY = 1 << 20
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
        issuer_key: ec.EllipticCurvePrivateKey | None) -> x509.Certificate:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(_name(subject))
            .issuer_name(issuer.subject if issuer else _name(subject)).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(issuer_key or key, hashes.SHA256()))


@dataclass
class TLSServerProfileCA:
    """The front: its directory URL, the root its chains lead to, and what it saw."""

    directory_url: str
    root_file: Path
    ca_bundle: Path  # the front's own HTTPS certificate (Pebble's)
    orders: list[str] = field(default_factory=list)  # newOrder requests seen
    reissued: list[x509.Certificate] = field(default_factory=list)


class _Signer:
    def __init__(self) -> None:
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = _ca("Test TLS Server Profile Root", self.root_key, None, None)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.intermediate = _ca("Test TLS Server Profile E1", self.key, self.root, self.root_key)

    def reissue(self, chain_pem: bytes) -> tuple[bytes, x509.Certificate]:
        """Pebble's leaf, as LE's tlsserver profile would have issued it for the same key and names."""
        pebble_leaf = x509.load_pem_x509_certificates(chain_pem)[0]
        names = pebble_leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        starts = pebble_leaf.not_valid_before_utc
        leaf = (x509.CertificateBuilder().subject_name(x509.Name([]))  # no CN
                .issuer_name(self.intermediate.subject).public_key(pebble_leaf.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(starts).not_valid_after(starts + timedelta(days=45))
                .add_extension(names, critical=True)  # the only identity: critical without a subject
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                             crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        pems = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, self.intermediate))
        return pems, leaf


def start_front(pebble: PebbleServer, directory: Path) -> tuple[TLSServerProfileCA, ThreadingHTTPServer]:
    signer = _Signer()
    directory.mkdir(parents=True, exist_ok=True)
    root_file = directory / "tlsserver-root.pem"
    root_file.write_bytes(signer.root.public_bytes(serialization.Encoding.PEM))
    upstream_host, upstream_port = pebble.directory_url.removeprefix("https://").split("/")[0].split(":")
    upstream_tls = ssl.create_default_context(cafile=str(pebble.tls_cert))
    front = TLSServerProfileCA("", root_file, pebble.tls_cert)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            return

        def _forward(self) -> None:
            length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
            body = self.rfile.read(length) if length else None
            if self.command == "POST" and self.path == NEW_ORDER_PATH:
                front.orders.append(self.path)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            connection = http.client.HTTPSConnection(upstream_host, int(upstream_port), context=upstream_tls,
                                                     timeout=10)
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read(MAX_BODY)
                status, answer_headers = answer.status, answer.getheaders()
            finally:
                connection.close()
            if (answer.getheader("Content-Type") or "").startswith(PEM_CHAIN):
                data, leaf = signer.reissue(data)
                front.reissued.append(leaf)
            self.send_response(status)
            for key, value in answer_headers:
                if key.lower() not in _HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_HEAD = _forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pebble.tls_cert, pebble.tls_cert.parent / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    front.directory_url = f"https://127.0.0.1:{server.server_address[1]}/dir"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()  # shutdown() at once
    return front, server


@pytest.fixture(scope="module")
def tlsserver_ca(tmp_path_factory: pytest.TempPathFactory, pebble: PebbleServer) -> Iterator[TLSServerProfileCA]:
    front, server = start_front(pebble, tmp_path_factory.mktemp("tlsserver-ca"))
    try:
        yield front
    finally:
        server.shutdown()
        server.server_close()
