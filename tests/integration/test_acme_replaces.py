"""ARI renewals name the certificate they replace (RFC 9773 §5, ``replaces`` in newOrder).

Sheet ``rs-8x-and-public-cas-2026.md`` §2: "``replaces`` exempts a renewal from rate limits only within the
suggested window". A rotation never sent it, so no renewal of ours was ever exempt, ARI window or not.

Pebble 2.4 offers no ARI: a real HTTPS front forwards every request to it as it came, adds ``renewalInfo`` to
the directory (the CA speaks ARI), records each newOrder's payload and, when told to, refuses an order that
names a certificate (as a CA refuses one already replaced, RFC 9773's ``alreadyReplaced``).
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from support.acme import TSIG_NAME, ZONE, NamedServer, PebbleServer
from support.cluster import write_inventory
from support.rotate import rotate_here

from rotation.adapters.dns.rfc2136 import RFC2136Provider
from rotation.adapters.issuers.acme.issuer import AcmeIssuer
from rotation.config import load_inventory
from rotation.core.model import CertName, CertRequest, Outcome
from rotation.simulator import ClusterSimulator
from rotation.usecases.rotate.run import RotationOptions

NEW_ORDER_PATH = "/order-plz"  # Pebble's newOrder
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


@dataclass
class AriFront:
    directory_url: str = ""
    orders: list[dict] = field(default_factory=list)  # the payload of every newOrder
    refuse_replaces: bool = False


def _payload(body: bytes) -> dict:
    jws = json.loads(body)
    text = base64.urlsafe_b64decode(jws["payload"] + "=" * (-len(jws["payload"]) % 4))
    return json.loads(text) if text else {}


@pytest.fixture
def ari_front(pebble: PebbleServer) -> Iterator[AriFront]:
    front = AriFront()
    host, port = pebble.directory_url.removeprefix("https://").split("/")[0].split(":")
    upstream = ssl.create_default_context(cafile=str(pebble.tls_cert))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            return

        def _answer(self, status: int, data: bytes, headers: list[tuple[str, str]]) -> None:
            self.send_response(status)
            for key, value in headers:
                if key.lower() not in _HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if self.command == "POST" and self.path == NEW_ORDER_PATH and body:
                payload = _payload(body)
                front.orders.append(payload)
                if front.refuse_replaces and "replaces" in payload:
                    problem = {"type": "urn:ietf:params:acme:error:alreadyReplaced",
                               "detail": "the certificate was already replaced"}
                    self._answer(409, json.dumps(problem).encode(),
                                 [("Content-Type", "application/problem+json")])
                    return
            connection = http.client.HTTPSConnection(host, int(port), context=upstream, timeout=10)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                data, status, answer_headers = answer.read(), answer.status, answer.getheaders()
            finally:
                connection.close()
            if self.command == "GET" and self.path == "/dir":
                directory = json.loads(data)
                directory["renewalInfo"] = f"https://{self.headers['Host']}/renewal-info"
                data = json.dumps(directory).encode()
            self._answer(status, data, answer_headers)

        do_GET = do_POST = do_HEAD = _forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pebble.tls_cert, pebble.tls_cert.parent / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    front.directory_url = f"https://127.0.0.1:{server.server_address[1]}/dir"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()  # shutdown() at once
    try:
        yield front
    finally:
        server.shutdown()
        server.server_close()


def cert_id(pem: str) -> str:
    """RFC 9773 §4.1: base64url(AKI keyIdentifier) "." base64url(DER serial), written out independently."""
    leaf = x509.load_pem_x509_certificate(pem.encode())
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    serial = leaf.serial_number.to_bytes(math.ceil((leaf.serial_number.bit_length() + 1) / 8), "big", signed=True)
    return ".".join(base64.urlsafe_b64encode(part).decode().rstrip("=") for part in (aki, serial))


def test_a_renewal_names_the_certificate_it_replaces_and_falls_back_when_refused(
    tmp_path: Path, simulator: ClusterSimulator, ca_files: tuple[Path, Path], state_dir: Path,
    named: NamedServer, pebble: PebbleServer, ari_front: AriFront,
) -> None:
    path = write_inventory(tmp_path / "rotation.yaml", simulator, ca_files)
    data = yaml.safe_load(path.read_text())
    (tmp_path / "tsig.secret").write_text(named.tsig_secret)
    data["issuers"]["pebble"] = {
        "type": "acme", "directory": ari_front.directory_url, "email": "ops@example.com",
        "ca_bundle": str(pebble.tls_cert), "trust_roots": str(pebble.root_file), "order_timeout": "30s",
        "dns": {"provider": "rfc2136", "server": named.address, "tsig_key_name": TSIG_NAME,
                "tsig_secret_file": "tsig.secret", "propagation_servers": [named.address],
                "propagation_timeout": "10s"},
    }
    data["clusters"]["sim"].update(issuer="pebble", certificates={"proxy": {"hosts": [ZONE]}})
    path.write_text(yaml.safe_dump(data))
    served = simulator.cluster_cert_pem("proxy")

    (record,) = rotate_here(load_inventory(path), "sim", ["proxy"], RotationOptions(poll_interval=0.1))
    assert record.outcome is Outcome.VERIFIED, record.error
    assert [order.get("replaces") for order in ari_front.orders] == [cert_id(served)]

    # A CA that refuses the named certificate (already replaced, or not one of its own): the order is made
    # again without it, and the rotation goes on.
    ari_front.orders.clear()
    ari_front.refuse_replaces = True
    issued_before = simulator.cluster_cert_pem("proxy")
    issuer = AcmeIssuer("pebble", ari_front.directory_url, challenge="dns-01", ca_bundle=pebble.tls_cert,
                        dns_provider=_dns(named), propagation_timeout=10.0)
    issued = issuer.issue(CertRequest("sim", CertName.PROXY, (ZONE,), replaces=issued_before))
    assert issued.leaf_pem
    assert [order.get("replaces") for order in ari_front.orders] == [cert_id(issued_before), None]


def _dns(named: NamedServer) -> RFC2136Provider:
    return RFC2136Provider(server=named.address, tsig_key_name=TSIG_NAME, tsig_secret=named.tsig_secret,
                           propagation_servers=[named.address], poll_interval=0.1)
