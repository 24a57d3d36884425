"""The simulator's issue-14 behaviours over real sockets: upload rules per certificate name and
version, every certificate name, INE fallback, OCSP against a real responder, the health report."""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from support.cluster import free_loopback_base, handshake_fingerprint, start_simulator
from support.ocsp_responder import OcspResponder

from rotation.simulator import ClusterSimulator, Database, LeafSpec, SimulatorConfig

FQDN = "cluster.test.local"
ONE_DB = [Database(1, "db1", 12000, True, "all-nodes")]
ROOT = Path(__file__).resolve().parents[2]
RSA_ONLY = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"


@pytest.fixture
def make_sim(tmp_path: Path) -> Iterator[Callable[..., ClusterSimulator]]:
    started: list[ClusterSimulator] = []

    def make(**overrides: Any) -> ClusterSimulator:
        overrides = {"nodes": 1, "databases": ONE_DB, "sentinel_port": None, **overrides}
        sim = start_simulator(tmp_path, **overrides)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


class Rest:
    """httpx against node 1's REST API, verified with the simulator's CA."""

    def __init__(self, sim: ClusterSimulator) -> None:
        self.sim = sim
        self.base = f"https://{sim.node_addresses[0]}:{sim.config.api_port}"
        self.client = httpx.Client(verify=ssl.create_default_context(cafile=str(sim.ca_path)), timeout=10,
                                   auth=(sim.admin_username, sim.admin_password))

    def __call__(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, self.base + path, extensions={"sni_hostname": FQDN}, **kwargs)

    def bulk(self, name: str, pair: tuple[str, str]) -> httpx.Response:
        return self("PUT", "/v1/cluster/certificates",
                    json={"certificates": [{"name": name, "certificate": pair[0], "key": pair[1]}]})

    def update(self, name: str, pair: tuple[str, str]) -> httpx.Response:
        return self("PUT", "/v1/cluster/update_cert", json={"name": name, "certificate": pair[0], "key": pair[1]})

    def certificates(self) -> dict[str, str]:
        return self("GET", "/v1/cluster/certificates").json()  # type: ignore[no-any-return]


@pytest.fixture
def rest_for() -> Iterator[Callable[[ClusterSimulator], Rest]]:
    clients: list[Rest] = []

    def make(sim: ClusterSimulator) -> Rest:
        clients.append(Rest(sim))
        return clients[-1]

    yield make
    for client in clients:
        client.client.close()


def leaf_of(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def fp(pem: str) -> str:
    return hashlib.sha256(leaf_of(pem).public_bytes(Encoding.DER)).hexdigest()


def refused(answer: httpx.Response, status: int, code: str) -> str:
    assert (answer.status_code, answer.json()["error_code"]) == (status, code), answer.text
    return str(answer.json()["description"])


def db_handshake(sim: ClusterSimulator) -> str:
    return handshake_fingerprint(sim.node_addresses[0], 12000, f"redis-12000.{FQDN}")


# -- upload rules --------------------------------------------------------------------------------------


def test_as_documented_profile_refuses_todays_public_certificates(
    make_sim: Callable[..., ClusterSimulator], rest_for: Callable[[ClusterSimulator], Rest]
) -> None:
    sim = make_sim()
    rest = rest_for(sim)
    public = LeafSpec.tlsserver()  # Let's Encrypt 2026: no CN, serverAuth only, no keyEncipherment
    assert rest.bulk("proxy", sim.issue_certificate(public)).status_code == 200  # mode "none": accepted
    options = rest("POST", "/_sim/options", json={"cert_profile": "as-documented"})
    assert options.json()["cert_profile"] == "as-documented"
    served = db_handshake(sim)
    for answer in (rest.bulk("proxy", sim.issue_certificate(public)),
                   rest.update("cm", sim.issue_certificate(public))):
        text = refused(answer, 400, "certificate_requirements_not_met")
        for needle in ("clientAuth", "no CN", f"internal.{FQDN}, *.internal.{FQDN}"):
            assert needle in text, text
        assert "keyEncipherment" not in text  # an ECDSA key needs none
    rsa_text = refused(rest.bulk("api", sim.issue_certificate(LeafSpec.tlsserver(key_type="rsa"))), 400,
                       "certificate_requirements_not_met")
    assert rsa_text.startswith("api: ") and "keyEncipherment" in rsa_text
    wrong_cn = refused(rest.bulk("api", sim.issue_certificate(LeafSpec.documented(FQDN, common_name="x.test"))),
                       400, "certificate_requirements_not_met")
    assert "CN is 'x.test'" in wrong_cn and "clientAuth" not in wrong_cn
    assert db_handshake(sim) == served and sim.served_fingerprint(1, "proxy") == served
    documented = sim.issue_certificate(LeafSpec.documented(FQDN))
    assert rest.bulk("proxy", documented).status_code == 200
    assert db_handshake(sim) == fp(documented[0])
    assert rest.bulk("ldap_client", sim.issue_certificate(public)).status_code == 200  # not a cluster cert
    refused(rest("POST", "/_sim/options", json={"cert_profile": "strict"}), 400, "invalid_option")


@pytest.mark.parametrize(("version", "enforced"), [
    ("7.22.0-95", None), ("7.22.2-14", False), ("7.22.2-79", True), ("8.0.6-54", False), ("8.0.10-64", True),
])
def test_internode_certificate_rules_follow_the_version(
    make_sim: Callable[..., ClusterSimulator], rest_for: Callable[[ClusterSimulator], Rest],
    version: str, enforced: bool | None,
) -> None:
    sim = make_sim(version=version, databases=[])
    rest = rest_for(sim)
    server_only = sim.issue_certificate(LeafSpec(client_auth=False))  # ECDSA, serverAuth only
    answer = rest.update("ccs_internode_encryption", server_only)
    if enforced is None:  # customer INE certificates arrived in 7.22.2; update_cert is the only path
        refused(answer, 403, "unknown_certificate")
        assert rest.update("ldap_client", server_only).status_code == 200
        return
    if enforced:
        text = refused(answer, 400, "invalid_internode_certificate")
        assert "clientAuth" in text and "RSA key, not EC secp256r1" in text
        assert "ccs_internode_encryption_cert" not in rest.certificates()
    else:
        assert answer.status_code == 200
        sim.set_options(cert_profile="as-documented")  # the documented INE rule, on any version
        refused(rest.update("data_internode_encryption", server_only), 400, "invalid_internode_certificate")
    good = sim.issue_certificate(LeafSpec(key_type="rsa", key_encipherment=True))
    assert rest.update("data_internode_encryption", good).status_code == 200
    assert rest.certificates()["data_internode_encryption_cert"] == good[0]


def test_certificate_versus_cipher_check_from_8_2(
    make_sim: Callable[..., ClusterSimulator], rest_for: Callable[[ClusterSimulator], Rest]
) -> None:
    for version, enforced in (("8.2.0-25", True), ("8.0.20-68", False)):
        sim = make_sim(version=version)
        rest = rest_for(sim)
        assert rest("PUT", "/v1/cluster", json={"control_cipher_suites": RSA_ONLY}).status_code == 200
        answer = rest.bulk("api", sim.issue_certificate())  # ECDSA
        if not enforced:
            assert answer.status_code == 200
            continue
        text = refused(answer, 400, "certificate_cipher_mismatch")
        assert "control_cipher_suites" in text and "RSA keys only" in text
        assert rest.bulk("proxy", sim.issue_certificate()).status_code == 200  # data path: default list
        rsa_pair = sim.issue_certificate(LeafSpec(key_type="rsa"))
        assert rest.bulk("api", rsa_pair).status_code == 200 and sim.served_fingerprint(1, "api") == fp(rsa_pair[0])
        assert rest("PUT", "/v1/cluster", json={"min_control_TLS_version": "1.3"}).status_code == 200
        assert rest.bulk("cm", sim.issue_certificate()).status_code == 200  # TLS 1.2 suites no longer matter


# -- every certificate name ----------------------------------------------------------------------------


def test_ldap_client_bulk_only_and_every_name_is_listed(
    make_sim: Callable[..., ClusterSimulator], rest_for: Callable[[ClusterSimulator], Rest]
) -> None:
    sim = make_sim(internode_certs=True, extra_certificates=("future_cert",))
    rest = rest_for(sim)
    listed = rest.certificates()
    for name in ("ccs_internode_encryption", "data_internode_encryption", "future_cert"):
        assert f"{name}_cert" in listed and f"{name}_key" in listed, name
    ine = leaf_of(listed["data_internode_encryption_cert"])
    assert isinstance(ine.public_key(), rsa.RSAPublicKey) and ine.issuer == sim.ca.cert.subject
    assert 89 <= (ine.not_valid_after_utc - ine.not_valid_before_utc).days <= 90
    served = {name: sim.served_fingerprint(1, name) for name in ("api", "cm", "proxy")}
    pair = sim.issue_certificate(LeafSpec(server_auth=False))  # a client certificate
    text = refused(rest.update("ldap_client", pair), 403, "unknown_certificate")
    assert "PUT /v1/cluster/certificates" in text and "ldap_client_cert" not in rest.certificates()
    assert rest.bulk("ldap_client", pair).status_code == 200
    listed = rest.certificates()
    assert (listed["ldap_client_cert"], listed["ldap_client_key"]) == pair
    assert {name: sim.served_fingerprint(1, name) for name in served} == served  # no listener presents it
    assert handshake_fingerprint(sim.node_addresses[0], 9443, FQDN) == served["api"]
    planted = rest("POST", "/_sim/certificates", json={"name": "brand_new", "days": 3, "key_type": "rsa"})
    assert planted.status_code == 200 and planted.json()["fingerprint"] == fp(rest.certificates()["brand_new_cert"])
    sso = sim.issue_certificate()
    assert sim.plant_certificate("sso_issuer", certificate=sso[0]) == fp(sso[0])
    listed = rest.certificates()
    assert "sso_issuer_cert" in listed and "sso_issuer_key" not in listed
    assert rest.bulk("brand_new", pair).status_code == 200  # a planted name is a name this cluster knows
    assert rest.certificates()["brand_new_cert"] == pair[0]
    for body in ({"name": "proxy"}, {"name": "Bad Name"}, {"name": "x", "days": 0}, {"name": "x", "colour": 1}):
        refused(rest("POST", "/_sim/certificates", json=body), 400, "invalid_option")
    assert sim.certificate_slots()["extra_names"] == ["brand_new", "future_cert", "sso_issuer"]


def test_ine_fallback_five_days_before_expiry(
    make_sim: Callable[..., ClusterSimulator], rest_for: Callable[[ClusterSimulator], Rest]
) -> None:
    sim = make_sim(internode_certs=True, databases=[])
    rest = rest_for(sim)
    spec = LeafSpec(key_type="rsa", key_encipherment=True)
    short = sim.issue_certificate(spec, days=4)
    assert rest.bulk("data_internode_encryption", short).status_code == 200
    assert rest.certificates()["data_internode_encryption_cert"] == short[0]  # option off: kept
    assert rest("POST", "/_sim/options", json={"ine_fallback": True}).json()["ine_fallback"] is True
    long = sim.issue_certificate(spec, days=30)
    assert rest.bulk("ccs_internode_encryption", long).status_code == 200
    listed = rest.certificates()
    assert listed["ccs_internode_encryption_cert"] == long[0]
    replacement = leaf_of(listed["data_internode_encryption_cert"])
    assert fp(listed["data_internode_encryption_cert"]) != fp(short[0])
    assert replacement.issuer == sim.ca.cert.subject and isinstance(replacement.public_key(), rsa.RSAPublicKey)
    assert replacement.not_valid_after_utc > leaf_of(short[0]).not_valid_after_utc + dt.timedelta(days=80)
    slots = sim.certificate_slots()
    assert [(f["name"], f["replaced"]) for f in slots["fallbacks"]] == [("data_internode_encryption", fp(short[0]))]
    assert slots["generated"] == ["data_internode_encryption"]
    rest.certificates()
    assert len(sim.certificate_slots()["fallbacks"]) == 1  # RS's own certificate is never swapped again


# -- OCSP ----------------------------------------------------------------------------------------------


def test_ocsp_needs_6_2_12_and_health_8_0_16(
    make_sim: Callable[..., ClusterSimulator], rest_for: Callable[[ClusterSimulator], Rest]
) -> None:
    rest = rest_for(make_sim(version="6.2.10-129", databases=[]))
    for method, path in (("GET", "/v1/ocsp"), ("PUT", "/v1/ocsp"), ("GET", "/v1/ocsp/status"),
                         ("POST", "/v1/ocsp/test")):
        answer = rest(method, path, json={"query_frequency": 600} if method == "PUT" else {})
        refused(answer, 406, "ocsp_unsupported_by_capability")
        assert answer.json()["message"] == answer.json()["description"]
    refused(rest("GET", "/v4/cluster/health"), 404, "not_found")


def test_ocsp_configuration_rules(
    make_sim: Callable[..., ClusterSimulator], rest_for: Callable[[ClusterSimulator], Rest]
) -> None:
    sim = make_sim(databases=[])
    rest = rest_for(sim)
    defaults = {"ocsp_functionality": False, "query_frequency": 3600, "response_timeout": 1,
                "recovery_frequency": 60, "recovery_max_tries": 5}
    assert rest("GET", "/v1/ocsp").json() == defaults  # no responder_url: the proxy certificate has none
    for body in ({"query_frequency": 59}, {"response_timeout": 61}, {"recovery_max_tries": True},
                 {"recovery_frequency": "60"}, {"ocsp_functionality": 1}, {"colour": 1},
                 {"responder_url": "http://127.0.0.1/"}, {}, []):
        refused(rest("PUT", "/v1/ocsp", json=body), 400, "invalid_schema")
    refused(rest("PUT", "/v1/ocsp", json={"ocsp_functionality": True, "query_frequency": 600}), 400, "no_responder_url")
    refused(rest("POST", "/v1/ocsp/test", json={}), 500, "no_responder_url")
    assert rest("GET", "/v1/ocsp").json() == defaults  # nothing applied
    assert rest("PUT", "/v1/ocsp", json={"query_frequency": 600}).json()["query_frequency"] == 600
    viewer = rest("GET", "/v1/ocsp", auth=(sim.viewer_username, sim.viewer_password))
    assert viewer.status_code == 403


def test_ocsp_test_queries_the_responder_for_real(
    make_sim: Callable[..., ClusterSimulator], rest_for: Callable[[ClusterSimulator], Rest]
) -> None:
    sim = make_sim(databases=[])
    rest = rest_for(sim)
    with OcspResponder(sim.ca.cert, sim.ca.key, host=free_loopback_base()) as responder:
        pair = sim.issue_certificate(LeafSpec(ocsp_url=responder.url))
        serial = leaf_of(pair[0]).serial_number
        assert rest.bulk("proxy", pair).status_code == 200
        assert rest("GET", "/v1/ocsp").json()["responder_url"] == responder.url
        responder.set_status(serial, "good")
        good = rest("POST", "/v1/ocsp/test", json={}).json()
        assert good["cert_status"] == "GOOD" and good["responder_url"] == responder.url
        this_update, next_update = (email.utils.parsedate_to_datetime(good[k]) for k in ("this_update", "next_update"))
        assert good["this_update"].endswith(" GMT") and next_update - this_update == dt.timedelta(hours=2)
        assert good["revocation_time"] is None and responder.requests == [serial]
        assert rest("GET", "/v1/ocsp/status").json()["cert_status"] is None  # stapling off: not cached
        revoked_at = dt.datetime(2026, 8, 1, 12, 0, 0, tzinfo=dt.UTC)
        responder.set_status(serial, "revoked", revoked_at=revoked_at)
        revoked = rest("POST", "/v1/ocsp/test", json={}).json()
        assert revoked["cert_status"] == "REVOKED"
        assert email.utils.parsedate_to_datetime(revoked["revocation_time"]) == revoked_at
        responder.set_status(serial, "unknown")
        assert rest("POST", "/v1/ocsp/test", json={}).json()["cert_status"] == "UNKNOWN"
        for fault, code in (("garbage", "invalid_ocsp_response"), ("unauthorized", "invalid_ocsp_response"),
                            ("wrong_key", "invalid_ocsp_response"), ("http_500", "ocsp_query_failed"),
                            ("silent", "ocsp_query_failed")):
            responder.fault = fault
            refused(rest("POST", "/v1/ocsp/test", json={}), 500, code)
        assert len(responder.requests) == 8  # every test was a real query
        assert "within 1 s" in sim._call(lambda: sim.ocsp.last_error)
    refused(rest("POST", "/v1/ocsp/test", json={}), 500, "ocsp_query_failed")  # responder gone


def test_stapling_cache_and_handshakes_without_an_ocsp_url(
    make_sim: Callable[..., ClusterSimulator], rest_for: Callable[[ClusterSimulator], Rest]
) -> None:
    with OcspResponder(None, None, host=free_loopback_base(), default="good") as responder:
        sim = make_sim(proxy_ocsp_url=responder.url)
        responder.sign_with(sim.ca.cert, sim.ca.key)
        rest = rest_for(sim)
        first = leaf_of(sim.cluster_cert_pem("proxy"))
        assert rest("PUT", "/v1/ocsp", json={"ocsp_functionality": True}).status_code == 200
        assert responder.requests == [first.serial_number]  # turning it on queries at once
        assert rest("GET", "/v1/ocsp/status").json()["cert_status"] == "GOOD"
        plain = sim.issue_certificate()  # no OCSP URL, like every Let's Encrypt certificate since 2025
        assert rest.bulk("proxy", plain).status_code == 200
        with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE"):
            db_handshake(sim)
        assert handshake_fingerprint(sim.node_addresses[0], 9443, FQDN) == sim.served_fingerprint(1, "api")
        assert rest("GET", "/v1/ocsp/status").json() == {
            "responder_url": None, "cert_status": None, "produced_at": None, "this_update": None,
            "next_update": None, "revocation_time": None}
        sim.set_options(ocsp_without_url="accept")
        assert db_handshake(sim) == fp(plain[0])
        sim.set_options(ocsp_without_url="fail")
        assert rest("PUT", "/v1/ocsp", json={"ocsp_functionality": False}).status_code == 200
        assert db_handshake(sim) == fp(plain[0])  # stapling off: served again
        refused(rest("PUT", "/v1/ocsp", json={"ocsp_functionality": True}), 400, "no_responder_url")
        second = sim.issue_certificate(LeafSpec(ocsp_url=responder.url))
        assert rest.bulk("proxy", second).status_code == 200
        assert rest("PUT", "/v1/ocsp", json={"ocsp_functionality": True}).status_code == 200
        third = sim.issue_certificate(LeafSpec(ocsp_url=responder.url))
        responder.set_status(leaf_of(third[0]), "revoked")
        assert rest.bulk("proxy", third).status_code == 200
        deadline = time.monotonic() + 10
        status = rest("GET", "/v1/ocsp/status").json()  # about the old certificate: starts a poll
        while status["cert_status"] is None and time.monotonic() < deadline:
            time.sleep(0.05)
            status = rest("GET", "/v1/ocsp/status").json()
        assert status["cert_status"] == "REVOKED" and status["revocation_time"] is not None
        assert responder.requests[-1] == leaf_of(third[0]).serial_number
        assert db_handshake(sim) == fp(third[0])  # stapling is not simulated: the status is


# -- the health report ---------------------------------------------------------------------------------


def test_health_report_matches_what_the_cluster_holds(
    make_sim: Callable[..., ClusterSimulator], rest_for: Callable[[ClusterSimulator], Rest]
) -> None:
    sim = make_sim(version="8.0.16-29", nodes=2, internode_certs=True, databases=[])
    rest = rest_for(sim)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    expired_pem, _ = sim.ca.issue(FQDN, past - dt.timedelta(days=30), past)
    sim.plant_certificate("sso_issuer", certificate=expired_pem)
    health = rest("GET", "/v4/cluster/health").json()
    held = {key.removesuffix("_cert"): pem for key, pem in rest.certificates().items() if key.endswith("_cert")}
    by_type = {c["type"]: c for c in health["certificates"]}
    assert set(by_type) == set(held) >= {"api", "proxy", "syncer", "ccs_internode_encryption", "sso_issuer"}
    for name, pem in held.items():
        until = dt.datetime.strptime(by_type[name]["valid_until"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        assert until == leaf_of(pem).not_valid_after_utc, name
        assert by_type[name]["expired"] is (name == "sso_issuer"), name
    alerts = {a["name"]: a for a in health["active_alerts"]}
    assert set(alerts) == {"cluster_certs_about_to_expire"}  # the simulator's own certs expire in 5 days
    assert "api" in alerts["cluster_certs_about_to_expire"]["details"]["certs_about_to_expire"]
    assert [(n["uid"], n["status"]) for n in health["nodes"]] == [(1, "active"), (2, "active")]
    assert health["license"]["expired"] is False
    sim.node_down(2)
    closed = socket.socket()
    closed.bind((sim.node_addresses[0], 0))  # a port nothing listens on
    dead_url = f"http://{sim.node_addresses[0]}:{closed.getsockname()[1]}/ocsp"
    try:
        assert rest.bulk("proxy", sim.issue_certificate(LeafSpec(ocsp_url=dead_url))).status_code == 409
        assert rest("PUT", "/v1/cluster", json={"alert_settings": {"cluster_ocsp_query_failed": True}}).is_success
        assert rest("PUT", "/v1/ocsp", json={"ocsp_functionality": True}).status_code == 200
    finally:
        closed.close()
    health = rest("GET", "/v4/cluster/health").json()
    assert [(n["uid"], n["status"]) for n in health["nodes"]] == [(1, "active"), (2, "down")]
    assert "cluster_ocsp_query_failed" in {a["name"] for a in health["active_alerts"]}


# -- configuration and the command line ----------------------------------------------------------------


@pytest.mark.parametrize("bad", [{"cert_profile": "strict"}, {"ocsp_without_url": "maybe"},
                                 {"extra_certificates": ("proxy",)}, {"extra_certificates": ("Bad-Name",)},
                                 {"proxy_ocsp_url": "ldap://x"}])
def test_bad_options_are_refused(tmp_path: Path, bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad)).split("_certificates")[0]):
        SimulatorConfig(state_dir=tmp_path, **bad)


def test_cli_flags(tmp_path: Path) -> None:
    base = free_loopback_base()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RS_SIM_PASSWORD": "s3cret-pass-2026", "COLUMNS": "200"}
    command = [sys.executable, "-m", "rotation.simulator", "--nodes", "1", "--first-address", base,
               "--state-dir", str(tmp_path / "state"), "--databases", "12000"]
    bad = subprocess.run([*command, "--cert-profile", "strict"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "cert_profile must be one of" in bad.stderr and "Traceback" not in bad.stderr
    url = f"http://{base}:9/ocsp"
    proc = subprocess.Popen(
        [*command, "--cert-profile", "as-documented", "--internode-certs", "--ine-fallback",
         "--extra-cert", "future_cert", "--ocsp-without-url", "accept", "--proxy-ocsp-url", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("Serving"):
                break
        ctx = ssl.create_default_context(cafile=str(tmp_path / "state" / "cluster-ca.pem"))
        with httpx.Client(verify=ctx, auth=("admin@cluster.sim.local", "s3cret-pass-2026")) as client:
            get = lambda path: client.get(f"https://{base}:9443{path}",  # noqa: E731
                                          extensions={"sni_hostname": "cluster.sim.local"}).json()
            slots = get("/_sim/certificates")
            assert slots["options"] == {"cert_profile": "as-documented", "ine_fallback": True,
                                        "ocsp_without_url": "accept"}
            assert slots["extra_names"] == ["future_cert"] and len(slots["generated"]) == 2
            assert get("/v1/ocsp")["responder_url"] == url
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
