"""Real BIND 9 and real Pebble for the ACME tests, on loopback ports, started once per module.

Import the fixtures into a test module (``from acme_fixtures import named, pebble, ...``).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.processes import free_port

ZONE = "cluster.test.local"
TSIG_NAME = "tsig-key"
CHALLENGE = f"_acme-challenge.{ZONE}."
EAB_KID = "kid-1"


class _QuickPolls:
    """``time`` as acme's client sees it: its sleeps capped at 50 ms (see ``_acme_polls_quickly``)."""

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(min(seconds, 0.05))


@pytest.fixture(scope="session", autouse=True)
def _acme_polls_quickly() -> Iterator[None]:
    """acme's ClientV2 sleeps a fixed 1 s before each look at a pending authorization or a finalized order
    (poll_authorizations, poll_finalization: no setting for it); Pebble (PEBBLE_VA_NOSLEEP) is done in
    milliseconds. Here it looks again every 50 ms instead, until the same deadline: every order in this
    process ends 1 s sooner, with the same outcome. (A worker subprocess keeps acme's 1 s.)"""
    import acme.client

    assert acme.client.time is time  # what it sleeps with (only ``time.sleep``: checked when upgrading acme)
    acme.client.time = _QuickPolls  # type: ignore[assignment]
    try:
        yield
    finally:
        acme.client.time = time


def _wait_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not open after {timeout}s:\n{log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- BIND 9 ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NamedServer:
    port: int
    tsig_secret: str
    directory: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def txt(self, name: str = CHALLENGE) -> set[str]:
        query = dns.message.make_query(name, dns.rdatatype.TXT)
        response = dns.query.tcp(query, "127.0.0.1", port=self.port, timeout=3)
        return {b"".join(r.strings).decode() for rrset in response.answer for r in rrset
                if rrset.rdtype == dns.rdatatype.TXT}


def _zone_text() -> str:
    return f"""$TTL 60
@       IN SOA ns1.{ZONE}. hostmaster.{ZONE}. 1 60 60 3600 60
@       IN NS  ns1.{ZONE}.
ns1     IN A   127.0.0.1
@       IN A   127.0.0.1
*       IN A   127.0.0.1
"""


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NamedServer]:
    if shutil.which("named") is None:
        pytest.fail("named (bind9) is not installed: run scripts/system-deps.sh")
    directory = tmp_path_factory.mktemp("named")
    port = free_port()
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    (directory / "db.zone").write_text(_zone_text())
    conf = directory / "named.conf"
    conf.write_text(f"""
options {{
    directory "{directory}";
    pid-file "{directory}/named.pid";
    session-keyfile "{directory}/session.key";
    managed-keys-directory "{directory}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    allow-query {{ any; }};
    notify no;
}};
controls {{ }};
key "{TSIG_NAME}" {{ algorithm hmac-sha256; secret "{secret}"; }};
zone "{ZONE}" {{ type primary; file "{directory}/db.zone"; allow-update {{ key "{TSIG_NAME}"; }}; }};
""")
    log = directory / "named.log"
    with log.open("wb") as out:
        process = subprocess.Popen(["named", "-g", "-c", str(conf), "-u", "root" if os.getuid() == 0 else
                                    os.environ.get("USER", "nobody")], stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_port(port, process, log)
        server = NamedServer(port, secret, directory)
        end = time.monotonic() + 10
        while True:  # the port opens before the zone is loaded
            try:
                query = dns.message.make_query(ZONE, dns.rdatatype.SOA)
                if dns.query.tcp(query, "127.0.0.1", port=port, timeout=1).answer:
                    break
            except Exception:
                pass
            if time.monotonic() > end:
                raise RuntimeError("named did not load the zone:\n" + log.read_text()[-2000:])
            time.sleep(0.05)
        yield server
    finally:
        _stop(process)


# --- Pebble ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PebbleServer:
    directory_url: str
    management_url: str
    http_port: int
    tls_cert: Path  # Pebble's own HTTPS certificate: the ca_bundle for the ACME client
    root_file: Path  # the root issued chains lead to, fetched from /roots/0
    eab_hmac_key: str | None
    log: Path

    @property
    def root_pem(self) -> str:
        return self.root_file.read_text()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble test localhost")])
    now = datetime.now(UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def start_pebble(directory: Path, dns_port: int, *, http_port: int | None = None,
                 eab: bool = False, extra_env: dict[str, str] | None = None) -> tuple[PebbleServer, subprocess.Popen]:
    if shutil.which("pebble") is None:
        pytest.fail("pebble is not installed: run scripts/system-deps.sh")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = _self_signed(directory)
    listen, management = free_port(), free_port()
    http_port = http_port or free_port()
    hmac_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=") if eab else None
    config = {"pebble": {
        "listenAddress": f"127.0.0.1:{listen}",
        "managementListenAddress": f"127.0.0.1:{management}",
        "certificate": str(cert),
        "privateKey": str(key),
        "httpPort": http_port,
        "tlsPort": free_port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": eab,
        "externalAccountMACKeys": {EAB_KID: hmac_key} if eab else {},
        "certificateValidityPeriod": 90 * 86400,
    }}
    (directory / "pebble.json").write_text(json.dumps(config))
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0",
           **(extra_env or {})}
    log = directory / "pebble.log"
    with log.open("wb") as out:
        process = subprocess.Popen(["pebble", "-config", str(directory / "pebble.json"),
                                    "-dnsserver", f"127.0.0.1:{dns_port}"],
                                   stdout=out, stderr=subprocess.STDOUT, env=env, cwd=directory)
    try:
        _wait_port(listen, process, log)
        _wait_port(management, process, log)
        context = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(f"https://127.0.0.1:{management}/roots/0", context=context, timeout=5) as r:
            root = r.read()
    except BaseException:
        _stop(process)
        raise
    root_file = directory / "pebble-root.pem"
    root_file.write_bytes(root)
    server = PebbleServer(f"https://127.0.0.1:{listen}/dir", f"https://127.0.0.1:{management}", http_port,
                          cert, root_file, hmac_key, log)
    return server, process


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory, named: NamedServer) -> Iterator[PebbleServer]:
    server, process = start_pebble(tmp_path_factory.mktemp("pebble"), named.port)
    try:
        yield server
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def pebble_eab(tmp_path_factory: pytest.TempPathFactory, named: NamedServer) -> Iterator[PebbleServer]:
    server, process = start_pebble(tmp_path_factory.mktemp("pebble-eab"), named.port, eab=True)
    try:
        yield server
    finally:
        _stop(process)


class FakeCA(ThreadingHTTPServer):
    """An ACME server over real HTTP on loopback that answers every POST (newAccount first) 429 rateLimited
    with ``retry_after``, and renewalInfo (ARI) with ``windows["current"]``; ``requests`` counts its answers."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FakeHandler)
        self.requests = 0
        self.windows: dict[str, dict[str, str]] = {}
        self.with_ari = True
        self.retry_after = "90"  # what a rate-limited POST says
        self.rate_limit_detail = "too many new accounts from this address"
        self.ari_retry_after = "21600"  # what a renewalInfo answer says
        self.ari_requests = 0
        self.ari_broken = False  # renewalInfo answers 500

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FakeHandler(BaseHTTPRequestHandler):
    server: FakeCA

    def _send(self, status: int, body: dict | None, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.server.requests += 1
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Replay-Nonce", base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("="))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(200, None)

    def do_GET(self) -> None:  # noqa: N802
        base = self.server.url
        if self.path == "/dir":
            directory = {"newNonce": f"{base}/nonce", "newAccount": f"{base}/account",
                         "newOrder": f"{base}/order"}
            if self.server.with_ari:
                directory["renewalInfo"] = f"{base}/renewal-info"
            self._send(200, directory)
        elif self.path.startswith("/renewal-info/"):
            self.server.ari_requests += 1
            if self.server.ari_broken:
                self._send(500, {"type": "urn:ietf:params:acme:error:serverInternal", "detail": "down"},
                           "application/problem+json")
                return
            self._send(200, {"suggestedWindow": self.server.windows["current"]},
                       headers={"Retry-After": self.server.ari_retry_after})
        else:
            self._send(404, {"type": "urn:ietf:params:acme:error:malformed", "detail": "no such resource"},
                       "application/problem+json")

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._send(429, {"type": "urn:ietf:params:acme:error:rateLimited", "detail": self.server.rate_limit_detail},
                   "application/problem+json", headers={"Retry-After": self.server.retry_after})

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def fake_ca() -> Iterator[FakeCA]:
    server = FakeCA()
    # polls for shutdown() every 50 ms, not 0.5 s: the teardown returns at once
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
