"""The RS cluster simulator itself, over real sockets (each test on its own 127.X.Y.* range)."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import gc
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from support.cluster import free_loopback_base
from support.processes import wait_for

from rotation.simulator import ClusterSimulator, Database, PortInUseError, SimulatorConfig
from rotation.simulator.command import parse_databases, parse_duration, write_inventory

FQDN = "cluster.sim.local"
ROOT = Path(__file__).resolve().parents[2]
SERVED = {"api": 9443, "cm": 8443, "metrics_exporter": 8070}


# -- certificates a client would bring --------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _sign(subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool,
          not_before: dt.datetime, not_after: dt.datetime) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(FQDN), x509.DNSName(f"*.{FQDN}")]), critical=False
        ).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


class TestCA:
    """Root -> intermediate -> leaf, like a corporate CA."""

    __test__ = False

    def __init__(self) -> None:
        now = dt.datetime.now(dt.UTC)
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = _sign("Test Root", self.root_key, "Test Root", self.root_key, ca=True,
                          not_before=now - dt.timedelta(days=1), not_after=now + dt.timedelta(days=3650))
        self.int_key = ec.generate_private_key(ec.SECP256R1())
        self.intermediate = _sign("Test Intermediate", self.int_key, "Test Root", self.root_key, ca=True,
                                  not_before=now - dt.timedelta(days=1),
                                  not_after=now + dt.timedelta(days=1825))

    def leaf(self, *, days: float = 90, expired: bool = False, rsa_key: bool = False) -> tuple[str, str, str]:
        """(fullchain PEM, key PEM, SHA-256 of the leaf)."""
        now = dt.datetime.now(dt.UTC)
        key = rsa.generate_private_key(65537, 2048) if rsa_key else ec.generate_private_key(ec.SECP256R1())
        if expired:
            not_before, not_after = now - dt.timedelta(days=30), now - dt.timedelta(days=1)
        else:
            not_before, not_after = now - dt.timedelta(minutes=5), now + dt.timedelta(days=days)
        cert = _sign(FQDN, key, "Test Intermediate", self.int_key, ca=False,
                     not_before=not_before, not_after=not_after)
        fp = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
        return _pem(cert) + _pem(self.intermediate), _key_pem(key), fp


@pytest.fixture(scope="module")
def test_ca() -> TestCA:
    return TestCA()


# -- simulator fixtures and clients ------------------------------------------------------------------


@pytest.fixture
def make_sim(tmp_path: Path) -> Iterator[Callable[..., ClusterSimulator]]:
    started: list[ClusterSimulator] = []

    def make(**overrides: Any) -> ClusterSimulator:
        overrides.setdefault("first_address", free_loopback_base())
        overrides.setdefault("state_dir", tmp_path / f"sim{len(started)}")
        sim = ClusterSimulator(SimulatorConfig(fqdn=FQDN, **overrides))
        sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(make_sim: Callable[..., ClusterSimulator]) -> ClusterSimulator:
    return make_sim()


class Api:
    """httpx against one node's REST API, verified with the simulator CA and SNI = fqdn."""

    def __init__(self, sim: ClusterSimulator, node: int = 1) -> None:
        self.sim = sim
        self.base = f"https://{sim.node_addresses[node - 1]}:{sim.config.api_port}"
        self.client = httpx.Client(verify=ssl.create_default_context(cafile=str(sim.ca_path)), timeout=10)
        _clients.append(self.client)  # closed after the test (``_close_clients``)

    def __call__(self, method: str, path: str, user: str = "admin", **kwargs: Any) -> httpx.Response:
        auth = {"admin": (self.sim.admin_username, self.sim.admin_password),
                "viewer": (self.sim.viewer_username, self.sim.viewer_password)}.get(user)
        if auth is not None:
            kwargs["auth"] = auth
        return self.client.request(method, self.base + path, extensions={"sni_hostname": FQDN}, **kwargs)


    def update(self, name: str, cert: str, key: str | None, **kwargs: Any) -> httpx.Response:
        return self("PUT", "/v1/cluster/update_cert", json={"name": name, "certificate": cert, "key": key}, **kwargs)

    def bulk(self, items: list[dict[str, Any]]) -> httpx.Response:
        return self("PUT", "/v1/cluster/certificates", json={"certificates": items})


@pytest.fixture
def rest(sim: ClusterSimulator) -> Api:
    return Api(sim)


_clients: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Every Api's client (and its keep-alive connection) ends with the test that made it."""
    yield
    while _clients:
        _clients.pop().close()


def peer_fp(addr: str, port: int) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((addr, port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return hashlib.sha256(der).hexdigest()


def all_fps(sim: ClusterSimulator, name: str) -> list[str]:
    return [sim.served_fingerprint(uid, name) for uid in range(1, sim.config.nodes + 1)]


def refused(addr: str, port: int) -> bool:
    try:
        socket.create_connection((addr, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


# -- listeners ------------------------------------------------------------------------------------------


def test_each_listener_presents_its_certificate(sim: ClusterSimulator) -> None:
    for uid, addr in enumerate(sim.node_addresses, start=1):
        for name, port in SERVED.items():
            assert peer_fp(addr, port) == sim.served_fingerprint(uid, name)
        assert peer_fp(addr, 12000) == sim.served_fingerprint(uid, "proxy")
    # db2 is proxy_policy=single: only node 1 listens
    assert peer_fp(sim.node_addresses[0], 12001) == sim.served_fingerprint(1, "proxy")
    assert refused(sim.node_addresses[1], 12001)
    names = ("api", "cm", "proxy", "syncer", "metrics_exporter")
    assert len({sim.served_fingerprint(1, n) for n in names}) == 5  # syncer is its own, never served
    # a verifying client with the simulator CA and the cluster names
    ctx = ssl.create_default_context(cafile=str(sim.ca_path))
    for host, port in ((FQDN, 9443), (f"redis-12000.{FQDN}", 12000), (f"node2.{FQDN}", 8443)):
        with socket.create_connection((sim.node_addresses[1], port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
                assert cert.subject.rfc4514_string() == f"CN={FQDN}"
    ca = x509.load_pem_x509_certificate(sim.ca_pem.encode())
    assert ca.subject.rfc4514_string() == f"CN={FQDN} self-signed CA"


def test_databases_speak_resp(sim: ClusterSimulator) -> None:
    ctx = ssl.create_default_context(cafile=str(sim.ca_path))
    with socket.create_connection((sim.node_addresses[2], 12000), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=f"redis-12000.{FQDN}") as tls:
            tls.sendall(b"*1\r\n$4\r\nPING\r\n")
            assert tls.recv(100) == b"+PONG\r\n"
            tls.sendall(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
            assert tls.recv(100).startswith(b"-ERR unknown command")
    with socket.create_connection((sim.node_addresses[0], 12002), timeout=5) as plain:
        plain.sendall(b"PING\r\n")
        assert plain.recv(100) == b"+PONG\r\n"


def test_metrics_follow_the_served_certificate(make_sim: Callable[..., ClusterSimulator]) -> None:
    sim = make_sim(expires_in=dt.timedelta(days=5))
    ctx = ssl.create_default_context(cafile=str(sim.ca_path))
    with httpx.Client(verify=ctx) as client:
        for path in ("/", "/v2"):
            text = client.get(f"https://{sim.node_addresses[1]}:8070{path}",
                              extensions={"sni_hostname": FQDN}).text
            line = next(li for li in text.splitlines()
                        if li.startswith("node_cert_expires_in_seconds") and '"proxy"' in li)
            assert f'cluster="{FQDN}",logical_name="proxy",node="2"' in line
            assert 'path="/etc/opt/redislabs/proxy_cert.pem"' in line
            assert 5 * 86400 - 120 < int(line.rsplit(" ", 1)[1]) <= 5 * 86400
            assert "node_cert_expiration_seconds{" in text
        page = client.get(f"https://{sim.node_addresses[0]}:8443/", extensions={"sni_hostname": FQDN})
        assert page.status_code == 200 and "<html>" in page.text


# -- REST API -----------------------------------------------------------------------------------------


def test_auth_permissions_and_content_type(rest: Api, test_ca: TestCA) -> None:
    anonymous = rest("GET", "/v1/nodes", user="nobody")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert anonymous.json()["error_code"] == "unauthorized"
    bad = rest("GET", "/v1/nodes", user="nobody", auth=(rest.sim.admin_username, "wrong"))
    assert bad.status_code == 401
    assert rest("GET", "/v1/cluster/certificates", user="viewer").status_code == 200
    cert, key, _ = test_ca.leaf()
    denied = rest("PUT", "/v1/cluster/update_cert", user="viewer",
                  json={"name": "proxy", "certificate": cert, "key": key})
    assert denied.status_code == 403 and denied.json()["error_code"] == "insufficient_permissions"
    wrong_type = rest("PUT", "/v1/cluster/update_cert", content=b"{}", headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 400 and wrong_type.json()["error_code"] == "bad_content_type"
    missing = rest("GET", "/v1/nope")
    assert missing.status_code == 404 and set(missing.json()) == {"error_code", "description"}


def test_get_routes(rest: Api) -> None:
    sim = rest.sim
    nodes = rest("GET", "/v1/nodes").json()
    assert [n["uid"] for n in nodes] == [1, 2, 3]
    assert nodes[1]["addr"] == sim.node_addresses[1] and nodes[1]["status"] == "active"
    assert nodes[1]["hostname"] == f"node2.{FQDN}" and nodes[1]["software_version"] == "7.22.2-14"
    assert nodes[0]["external_addr"] == [] and "uptime" in nodes[0] and "shard_count" in nodes[0]
    assert rest("GET", "/v1/nodes/3").json()["uid"] == 3
    assert rest("GET", "/v1/nodes/9").status_code == 404
    cluster = rest("GET", "/v1/cluster").json()
    assert cluster["name"] == FQDN and cluster["cm_port"] == 8443 and cluster["cnm_https_port"] == 9443
    assert cluster["min_control_TLS_version"] == "1.2" and cluster["sentinel_tls_mode"] == "allowed"
    assert cluster["control_cipher_suites"] == "DEFAULT:!3DES" and cluster["data_cipher_suites_tls_1_3"] == []
    assert cluster["alert_settings"]["cluster_certs_about_to_expire"] == {"enabled": True, "threshold": "45"}
    assert cluster["proxy_certificate"] == sim.cluster_cert_pem("proxy")
    bdbs = {b["name"]: b for b in rest("GET", "/v1/bdbs").json()}
    assert bdbs["db1"]["tls_mode"] == "enabled" and bdbs["plain"]["tls_mode"] == "disabled"
    endpoint = bdbs["db2"]["endpoints"][0]
    assert endpoint["dns_name"] == f"redis-12001.{FQDN}" and endpoint["addr"] == sim.node_addresses[:1]
    assert bdbs["db1"]["endpoints"][0]["addr"] == sim.node_addresses
    certs = rest("GET", "/v1/cluster/certificates").json()
    assert set(certs) == {f"{n}_{k}" for n in ("api", "cm", "proxy", "syncer", "metrics_exporter")
                          for k in ("cert", "key")}
    alerts = rest("GET", "/v1/cluster/alerts").json()
    assert alerts["cluster_certs_about_to_expire"]["state"] is False


def test_update_cert_reaches_new_handshakes_not_open_connections(rest: Api, test_ca: TestCA) -> None:
    sim = rest.sim
    old = sim.served_fingerprint(2, "proxy")
    ctx = ssl.create_default_context(cafile=str(sim.ca_path))
    raw = socket.create_connection((sim.node_addresses[1], 12000), timeout=5)
    held = ctx.wrap_socket(raw, server_hostname=f"redis-12000.{FQDN}")
    try:
        cert, key, fp = test_ca.leaf()
        answer = rest.update("proxy", cert, key)
        assert answer.status_code == 200 and answer.json() == {}
        assert all_fps(sim, "proxy") == [fp, fp, fp]
        for addr in sim.node_addresses:
            assert peer_fp(addr, 12000) == fp
        assert peer_fp(sim.node_addresses[0], 12001) == fp
        held_der = held.getpeercert(binary_form=True) or b""
        assert hashlib.sha256(held_der).hexdigest() == old
        held.sendall(b"PING\r\n")
        assert held.recv(100) == b"+PONG\r\n"
    finally:
        held.close()
    assert rest("GET", "/v1/cluster").json()["proxy_certificate"] == cert
    assert rest("GET", "/v1/cluster/certificates").json()["proxy_key"] == key
    assert json.loads(sim.received_update_bodies[-1])["certificate"] == cert
    # api: the keep-alive REST connection itself is unaffected, new connections see the new cert
    api_cert, api_key, api_fp = test_ca.leaf(rsa_key=True)
    assert rest.update("api", api_cert, api_key).status_code == 200
    assert rest("GET", "/v1/nodes/1").status_code == 200
    assert peer_fp(sim.node_addresses[2], 9443) == api_fp


def _validation_cases(ca: TestCA) -> list[tuple[str, dict[str, Any], int, str]]:
    cert, key, _ = ca.leaf()
    _, other_key, _ = ca.leaf()
    expired_cert, expired_key, _ = ca.leaf(expired=True)
    leaf_only = cert.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    wrong_order = _pem(ca.root) + leaf_only
    return [
        ("unknown name", {"name": "nginx", "certificate": cert, "key": key}, 403, "unknown_certificate"),
        ("bad cert pem", {"name": "proxy", "certificate": "-----BEGIN CERTIFICATE-----\nxx\n", "key": key},
         400, "invalid_certificate"),
        ("bad key pem", {"name": "proxy", "certificate": cert, "key": "not a key"}, 400, "invalid_certificate"),
        ("broken chain", {"name": "proxy", "certificate": wrong_order, "key": key}, 400, "invalid_chain"),
        ("key mismatch", {"name": "proxy", "certificate": cert, "key": other_key}, 400, "key_mismatch"),
        ("expired", {"name": "proxy", "certificate": expired_cert, "key": expired_key}, 406, "cert_expired"),
        ("extra property", {"name": "proxy", "certificate": cert, "key": key, "x": 1}, 400, "invalid_request"),
    ]


def test_validation_errors_change_nothing(rest: Api, test_ca: TestCA) -> None:
    sim = rest.sim
    before = all_fps(sim, "proxy"), sim.cluster_cert_pem("proxy")
    for label, body, status, code in _validation_cases(test_ca):
        for answer in (rest("PUT", "/v1/cluster/update_cert", json=body), rest.bulk([body])):
            assert (answer.status_code, answer.json()["error_code"]) == (status, code), label
            assert (all_fps(sim, "proxy"), sim.cluster_cert_pem("proxy")) == before, label
    assert rest("PUT", "/v1/cluster/update_cert", content=b"{nope",
                headers={"content-type": "application/json"}).json()["error_code"] == "invalid_json"


def test_bulk_put_is_all_or_nothing(rest: Api, test_ca: TestCA) -> None:
    sim = rest.sim
    good_cert, good_key, good_fp = test_ca.leaf()
    bad_cert, bad_key, _ = test_ca.leaf(expired=True)
    before = all_fps(sim, "proxy")
    answer = rest.bulk([{"name": "proxy", "certificate": good_cert, "key": good_key},
                        {"name": "cm", "certificate": bad_cert, "key": bad_key}])
    assert answer.status_code == 406 and all_fps(sim, "proxy") == before
    cm_cert, cm_key, cm_fp = test_ca.leaf()
    answer = rest.bulk([{"name": "proxy", "certificate": good_cert, "key": good_key},
                        {"name": "cm", "certificate": cm_cert, "key": cm_key}])
    assert answer.status_code == 200
    assert all_fps(sim, "proxy") == [good_fp] * 3 and all_fps(sim, "cm") == [cm_fp] * 3
    assert peer_fp(sim.node_addresses[1], 8443) == cm_fp


def test_old_profile_has_no_bulk_put(make_sim: Callable[..., ClusterSimulator], test_ca: TestCA) -> None:
    sim = make_sim(version="7.22.0-95", nodes=1, databases=[])
    rest = Api(sim)
    cert, key, fp = test_ca.leaf()
    missing = rest.bulk([{"name": "proxy", "certificate": cert, "key": key}])
    assert missing.status_code == 404 and missing.json()["error_code"] == "not_found"
    assert rest("GET", "/v1/cluster/certificates").status_code == 200
    assert rest.update("cm", cert, key).status_code == 200 and sim.served_fingerprint(1, "cm") == fp
    assert rest("GET", "/v1/nodes/1").json()["software_version"] == "7.22.0-95"


# -- faults ---------------------------------------------------------------------------------------------


def test_fail_next_500_then_409_partial(rest: Api, test_ca: TestCA) -> None:
    sim = rest.sim
    before = all_fps(sim, "proxy")
    cert, key, fp = test_ca.leaf()
    sim.fail_next(1, 500)
    answer = rest.update("proxy", cert, key)
    assert answer.status_code == 500 and answer.json()["error_code"] == "internal_error"
    assert all_fps(sim, "proxy") == before
    sim.fail_next(1, 409)
    answer = rest.update("proxy", cert, key)
    assert answer.status_code == 409 and answer.json()["error_code"] == "nodes_not_updated"
    assert all_fps(sim, "proxy") == [fp, before[1], before[2]]
    assert sim.cluster_cert_pem("proxy") == cert
    assert rest.update("proxy", cert, key).status_code == 200  # the retry completes it
    assert all_fps(sim, "proxy") == [fp] * 3


def test_node_down_partial_update_and_resync(rest: Api, test_ca: TestCA) -> None:
    sim = rest.sim
    node2 = sim.node_addresses[1]
    old = sim.served_fingerprint(2, "proxy")
    sim.node_down(2)
    assert refused(node2, 9443) and refused(node2, 12000) and refused(node2, 8070)
    assert rest("GET", "/v1/nodes/2").json()["status"] == "down"
    cert, key, fp = test_ca.leaf()
    answer = rest.update("proxy", cert, key)
    assert answer.status_code == 409 and answer.json()["error_code"] == "nodes_not_updated"
    assert all_fps(sim, "proxy") == [fp, old, fp]
    sim.node_down(2, down=False)
    assert peer_fp(node2, 12000) == fp
    assert Api(sim, node=2)("GET", "/v1/nodes/2").json()["status"] == "active"


def test_node_returning_without_resync_stays_stale(
    make_sim: Callable[..., ClusterSimulator], test_ca: TestCA
) -> None:
    sim = make_sim(resync_on_return=False, nodes=2)
    old = sim.served_fingerprint(2, "cm")
    sim.node_down(2)
    cert, key, fp = test_ca.leaf()
    assert Api(sim).update("cm", cert, key).status_code == 409
    sim.node_down(2, down=False)
    assert peer_fp(sim.node_addresses[1], 8443) == old and sim.served_fingerprint(1, "cm") == fp


def test_a_stop_while_clients_connect_closes_every_accepted_socket(make_sim: Callable[..., ClusterSimulator]
                                                                   ) -> None:
    """A connection accepted as the simulator stops is closed by it, not left to the garbage collector (whose
    unclosed-socket warning failed an unrelated test's teardown in CI, when a worker probed at that moment)."""
    sim = make_sim(nodes=1)
    address = sim.node_addresses[0]
    stop, connected = threading.Event(), [0]

    def connect() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError), socket.create_connection((address, 12000), timeout=1):
                connected[0] += 1

    threads = [threading.Thread(target=connect) for _ in range(4)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for thread in threads:
            thread.start()
        wait_for(lambda: connected[0] >= 20, 10, 0.01, what="connections")
        sim.stop()
        stop.set()
        for thread in threads:
            thread.join()
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_stale_node_switches_after_the_window(rest: Api, test_ca: TestCA) -> None:
    sim = rest.sim
    old_proxy, old_cm = sim.served_fingerprint(2, "proxy"), sim.served_fingerprint(2, "cm")
    # long enough that the checks below fall in it on a busy machine; the switch is then waited for
    sim.stale(2, seconds=3, cert_name="proxy")
    proxy_cert, proxy_key, proxy_fp = test_ca.leaf()
    cm_cert, cm_key, cm_fp = test_ca.leaf()
    answer = rest.bulk([{"name": "proxy", "certificate": proxy_cert, "key": proxy_key},
                        {"name": "cm", "certificate": cm_cert, "key": cm_key}])
    assert answer.status_code == 200
    assert peer_fp(sim.node_addresses[1], 12000) == old_proxy != proxy_fp
    assert peer_fp(sim.node_addresses[1], 8443) == cm_fp != old_cm  # only proxy is held back
    assert peer_fp(sim.node_addresses[2], 12000) == proxy_fp
    # it switches by itself: no call, only the window's end
    wait_for(lambda: peer_fp(sim.node_addresses[1], 12000) == proxy_fp, 30, 0.1, what="the stale node to switch")
    # for good, until cleared
    sim.stale(3)
    cert, key, fp = test_ca.leaf()
    assert rest.update("proxy", cert, key).status_code == 200
    assert sim.served_fingerprint(3, "proxy") == proxy_fp
    sim.stale(3, seconds=0)
    assert sim.served_fingerprint(3, "proxy") == fp


def test_slow_and_latency(make_sim: Callable[..., ClusterSimulator]) -> None:
    sim = make_sim(nodes=1, databases=[], api_latency=0.1)
    rest = Api(sim)
    # A delay only ever makes a call longer: lower bounds hold on any machine, upper bounds would not.
    started = time.monotonic()
    rest("GET", "/v1/cluster")
    assert time.monotonic() - started >= 0.1
    sim.slow(0.4)
    assert rest("GET", "/_sim/state").json()["faults"]["slow"] == 0.4
    started = time.monotonic()
    assert rest("GET", "/v1/nodes").status_code == 200
    assert time.monotonic() - started >= 0.5
    sim.clear_faults()
    assert rest("GET", "/_sim/state").json()["faults"]["slow"] == 0.0


def test_fail_requests_answers_matching_rest_calls_only(rest: Api) -> None:
    sim = rest.sim
    sim.fail_requests(2, 503, method="GET", path="/v1/cluster/certificates")
    sim.fail_requests(1, 302, path="/v1/nodes", location="https://elsewhere.test/")
    assert rest("GET", "/v1/cluster").status_code == 200  # another path
    assert rest("GET", "/v1/cluster/certificates").status_code == 503
    moved = rest("GET", "/v1/nodes")
    assert moved.status_code == 302 and moved.headers["location"] == "https://elsewhere.test/"
    assert rest("GET", "/_sim/state").json()["faults"]["fail_requests"] == [
        {"count": 1, "status": 503, "method": "GET", "path": "/v1/cluster/certificates"}]
    assert rest("GET", "/v1/cluster/certificates").status_code == 503
    assert rest("GET", "/v1/cluster/certificates").status_code == 200  # used up
    with pytest.raises(ValueError, match="3xx needs a location"):
        sim.fail_requests(1, 301)


def test_fail_nth_answers_the_nth_request_each_way_and_the_log_lists_them(rest: Api, test_ca: TestCA) -> None:
    sim = rest.sim
    sim.log_requests()
    sim.fail_nth(2, "503")
    sim.fail_nth(3, "500-html")
    assert rest("GET", "/v1/cluster").status_code == 200
    assert rest("GET", "/v1/nodes").json()["error_code"] == "service_unavailable"
    page = rest("GET", "/v1/nodes")
    assert page.status_code == 500 and page.headers["content-type"] == "text/html" and b"<html>" in page.content
    assert rest("GET", "/_sim/state").status_code == 200  # control routes are neither counted nor failed
    assert sim.logged_requests() == ["GET /v1/cluster", "GET /v1/nodes", "GET /v1/nodes"]  # in order

    cert, key, fp = test_ca.leaf()
    sim.fail_nth(1, "409")  # to a certificate change: RS's "not all nodes were updated", the first one was
    assert rest.update("proxy", cert, key).status_code == 409
    assert all_fps(sim, "proxy")[0] == fp != all_fps(sim, "proxy")[1]
    sim.fail_nth(1, "409")  # to anything else: nothing applied
    assert rest("GET", "/v1/cluster").status_code == 409

    cert, key, fp = test_ca.leaf()
    sim.fail_nth(1, "reset")  # done, never answered
    with pytest.raises(httpx.RemoteProtocolError):
        rest.update("proxy", cert, key)
    assert all_fps(sim, "proxy") == [fp, fp, fp]
    cert, key, fp = test_ca.leaf()
    assert rest("GET", "/v1/cluster").status_code == 200  # a keep-alive connection: the timeout is the answer's
    sim.fail_nth(1, "hang", hang_seconds=5)  # done, unanswered until the client gives up
    with pytest.raises(httpx.TimeoutException):
        rest.update("proxy", cert, key, timeout=0.5)
    assert all_fps(sim, "proxy") == [fp, fp, fp]
    assert rest("GET", "/_sim/state").json()["faults"]["fail_nth"] == []
    with pytest.raises(ValueError, match="fail_nth needs"):
        sim.fail_nth(0, "503")


def test_control_routes(rest: Api, test_ca: TestCA) -> None:
    sim = rest.sim
    state = rest("GET", "/_sim/state").json()
    assert state["nodes"]["2"]["fingerprints"]["proxy"] == sim.served_fingerprint(2, "proxy")
    assert rest("GET", "/_sim/state", user="viewer").status_code == 403
    answer = rest("POST", "/_sim/faults", json={"actions": [
        {"action": "fail_next", "count": 1, "status": 500},
        {"action": "node_down", "uid": 3},
        {"action": "stale", "uid": 2, "seconds": 30},
    ]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["fail_next"] == [500] and answer.json()["down"] == [3]
    assert refused(sim.node_addresses[2], 9443)
    cert, key, fp = test_ca.leaf()
    assert rest.update("proxy", cert, key).status_code == 500
    assert rest.update("proxy", cert, key).status_code == 409  # node 3 is down
    state = rest("GET", "/_sim/state").json()
    assert state["nodes"]["1"]["fingerprints"]["proxy"] == fp
    assert state["nodes"]["2"]["pending"]["proxy"] == fp and state["nodes"]["3"]["status"] == "down"
    assert rest("POST", "/_sim/faults", json={"action": "clear_faults"}).status_code == 200
    assert rest("POST", "/_sim/faults", json={"action": "node_down", "uid": 3, "down": False}).status_code == 200
    assert rest("POST", "/_sim/faults", json={"action": "explode"}).json()["error_code"] == "invalid_fault"
    assert all_fps(sim, "proxy") == [fp] * 3


# -- process-level behaviour -------------------------------------------------------------------------------


def test_two_simulators_side_by_side(make_sim: Callable[..., ClusterSimulator]) -> None:
    first, second = make_sim(nodes=2), make_sim(nodes=2)
    assert first.node_addresses != second.node_addresses
    assert peer_fp(first.node_addresses[1], 9443) == first.served_fingerprint(2, "api")
    assert peer_fp(second.node_addresses[1], 9443) == second.served_fingerprint(2, "api")
    assert first.served_fingerprint(2, "api") != second.served_fingerprint(2, "api")


def test_port_already_taken_is_a_clear_error(tmp_path: Path) -> None:
    base = free_loopback_base()
    blocker = socket.socket()
    blocker.bind((base, 8070))
    blocker.listen()
    try:
        sim = ClusterSimulator(SimulatorConfig(first_address=base, state_dir=tmp_path, nodes=1))
        with pytest.raises(PortInUseError, match=rf"{base}:8070.*already in use"):
            sim.start()
    finally:
        blocker.close()
    with ClusterSimulator(SimulatorConfig(first_address=base, state_dir=tmp_path, nodes=1)) as again:
        assert peer_fp(base, 9443) == again.served_fingerprint(1, "api")  # the failed start released 9443


def test_connect_delay_does_not_serialise_handshakes(make_sim: Callable[..., ClusterSimulator]) -> None:
    sim = make_sim(connect_delay=0.3, nodes=3)
    targets = [(addr, port) for addr in sim.node_addresses for port in (9443, 8443, 8070, 12000)]
    barrier = threading.Barrier(len(targets))
    results: list[str] = []

    def connect(addr: str, port: int) -> None:
        barrier.wait()
        results.append(peer_fp(addr, port))

    threads = [threading.Thread(target=connect, args=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == len(targets)
    # Structure, not wall time: the simulator's own accept/ready stamps of every connection (a server
    # side may note its end of the handshake just after the client returned).
    def noted() -> list[tuple[float, float | None]] | None:
        timeline = sim.connection_timeline()
        return timeline if len(timeline) == len(targets) else None

    spans = wait_for(noted, 10, 0.02, what="the simulator to note every handshake")
    assert all(ready is not None for _, ready in spans)
    events = sorted([(accepted, 1) for accepted, _ in spans] + [(ready, -1) for _, ready in spans])  # type: ignore[misc]
    in_progress = most = 0
    for _, step in events:
        in_progress += step
        most = max(most, in_progress)
    # Serialised handshakes would never overlap (1); half of them at once leaves room for a loaded machine.
    assert most >= len(targets) // 2


def test_inventory_entry_and_cli_helpers(sim: ClusterSimulator, tmp_path: Path) -> None:
    entry = sim.inventory_entry("lab")
    assert entry["url"] == f"https://{sim.node_addresses[0]}:9443" and entry["tls_server_name"] == FQDN
    assert Path(entry["password_file"]).read_text().strip() == sim.admin_password
    assert os.stat(entry["password_file"]).st_mode & 0o777 == 0o600
    assert Path(entry["verify"]).read_text() == sim.ca_pem
    assert entry["ports"] == {"cm": 8443, "api": 9443, "metrics_exporter": 8070}
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(yaml.safe_dump({"defaults": {"x": 1}, "clusters": {"other": {"url": "u"}}}))
    write_inventory(inventory, "lab", entry)
    data = yaml.safe_load(inventory.read_text())
    assert data["defaults"] == {"x": 1} and set(data["clusters"]) == {"other", "lab"}
    assert parse_duration("5d") == dt.timedelta(days=5) and parse_duration("1h30m").total_seconds() == 5400
    with pytest.raises(ValueError):
        parse_duration("5 days")
    assert parse_databases("12000,12001:single,12002:plain")[2] == Database(3, "db3", 12002, False, "all-nodes")


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    base = free_loopback_base()
    inventory = tmp_path / "inv.yaml"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RS_SIM_PASSWORD": "s3cret-pass"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rotation.simulator", "--nodes", "2", "--first-address", base,
         "--state-dir", str(tmp_path / "state"), "--write-config", str(inventory), "--expires-in", "5d",
         "--databases", "12000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Serving"):
                break
        entry = yaml.safe_load(inventory.read_text())["clusters"]["sim"]
        ctx = ssl.create_default_context(cafile=entry["verify"])
        with httpx.Client(verify=ctx, auth=(entry["username"], "s3cret-pass")) as client:
            state = client.get(f"{entry['url']}/_sim/state", extensions={"sni_hostname": FQDN}).json()
        assert set(state["nodes"]) == {"1", "2"} and state["nodes"]["2"]["addr"] == base[:-1] + "2"
        assert state["nodes"]["1"]["fingerprints"]["api"] == peer_fp(base, 9443)
        assert any(state["nodes"]["1"]["fingerprints"]["api"] in line for line in lines)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


def test_raw_http_keep_alive_chunked_and_limits(sim: ClusterSimulator) -> None:
    ctx = ssl.create_default_context(cafile=str(sim.ca_path))
    token = base64.b64encode(f"{sim.admin_username}:{sim.admin_password}".encode()).decode()
    head = f"Host: {FQDN}\r\nAuthorization: Basic {token}\r\n"
    with socket.create_connection((sim.node_addresses[0], 9443), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=FQDN) as tls:
            reader = tls.makefile("rb")

            def answer() -> tuple[int, dict[str, str], bytes]:
                status = int(reader.readline().split()[1])
                headers = {}
                while (line := reader.readline()) != b"\r\n":
                    name, _, value = line.decode().partition(":")
                    headers[name.lower()] = value.strip()
                return status, headers, reader.read(int(headers["content-length"]))

            tls.sendall(f"GET /v1/nodes/1 HTTP/1.1\r\n{head}\r\n".encode())
            status, headers, body = answer()
            assert status == 200 and headers["connection"] == "keep-alive" and json.loads(body)["uid"] == 1
            chunked = b'{"name": "nope", "certificate": "x"}'
            tls.sendall(f"PUT /v1/cluster/update_cert HTTP/1.1\r\n{head}Content-Type: application/json\r\n"
                        f"Transfer-Encoding: chunked\r\n\r\n{len(chunked):x}\r\n".encode() + chunked
                        + b"\r\n0\r\n\r\n")
            status, _, body = answer()
            assert status == 403 and json.loads(body)["error_code"] == "unknown_certificate"
            tls.sendall(f"PUT /v1/cluster/update_cert HTTP/1.1\r\n{head}Content-Type: application/json\r\n"
                        f"Content-Length: {2 * 1024 * 1024}\r\n\r\n".encode())
            status, headers, body = answer()
            assert status == 413 and headers["connection"] == "close"
            assert json.loads(body)["error_code"] == "payload_too_large"
