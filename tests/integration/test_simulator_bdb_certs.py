"""Per-database certificates of the simulator: REST routes, and what each database endpoint serves
(checked with plain ssl handshakes with the database's SNI)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from cryptography import x509
from support.cluster import handshake_fingerprint, start_simulator
from support.rest import FQDN, Rest, client_ca

from rotation.simulator import ClusterSimulator
from rotation.simulator.tls import fingerprint

# default databases: 1 = TLS on every node (12000), 2 = TLS on node 1 only (12001), 3 = plain (12002)
PORTS = {1: 12000, 2: 12001}


def issue(sim: ClusterSimulator, days: float = 30, past: bool = False) -> tuple[str, str, str]:
    """(certificate PEM, key PEM, fingerprint) from the simulator's CA, valid for ``days``."""
    now = dt.datetime.now(dt.UTC)
    start, end = (now - dt.timedelta(days=30), now - dt.timedelta(days=1)) if past else (
        now - dt.timedelta(minutes=5), now + dt.timedelta(days=days))
    cert, key = sim.ca.issue(FQDN, start, end)
    return cert, key, fingerprint(x509.load_pem_x509_certificate(cert.encode()))


def served(sim: ClusterSimulator, bdb_uid: int) -> list[str]:
    """What a new handshake on the database's port gets, node by node (the nodes it binds)."""
    nodes = sim.node_addresses if bdb_uid == 1 else sim.node_addresses[:1]
    return [handshake_fingerprint(addr, PORTS[bdb_uid], f"redis-{PORTS[bdb_uid]}.{FQDN}") for addr in nodes]


def post(rest: Rest, uid: int, cert: str, key: str, query: str = "") -> Any:
    return rest("POST", f"/v1/bdbs/{uid}/certificates{query}", json={"cert": cert, "private_key": key})


def test_database_certificate_is_served_on_its_own_endpoint_and_falls_back(sim: ClusterSimulator) -> None:
    rest, proxy = Rest(sim), sim.served_fingerprint(1, "proxy")
    cert, key, fp = issue(sim)
    dry = post(rest, 1, cert, key, "?dry_run")
    assert dry.status_code == 200 and set(dry.json()) == {"bdb_uid", "cert", "not_before", "not_after"}
    assert served(sim, 1) == [proxy] * 3 and rest("GET", "/v1/bdbs/1/certificates").status_code == 404
    answer = post(rest, 1, cert, key)
    assert answer.status_code == 200 and answer.json()["bdb_uid"] == 1
    assert served(sim, 1) == [fp] * 3 and served(sim, 2) == [proxy]  # the other database keeps proxy
    got = rest("GET", "/v1/bdbs/1/certificates").json()
    assert got["cert"] == cert and got["not_after"].endswith("Z")
    # a cluster proxy rotation reaches the databases without a certificate of their own only
    new_proxy, new_proxy_key, new_proxy_fp = issue(sim)
    assert rest("PUT", "/v1/cluster/update_cert",
                json={"name": "proxy", "certificate": new_proxy, "key": new_proxy_key}).status_code == 200
    assert served(sim, 1) == [fp] * 3 and served(sim, 2) == [new_proxy_fp]
    assert rest("DELETE", "/v1/bdbs/1/certificates").status_code == 200
    assert served(sim, 1) == [new_proxy_fp] * 3
    gone = rest("GET", "/v1/bdbs/1/certificates")
    assert gone.status_code == 404 and gone.json()["error_code"] == "certificate_not_found"
    assert rest("DELETE", "/v1/bdbs/1/certificates").json()["error_code"] == "certificate_not_found"
    assert sim.database_certs.requests == [("POST", 1, True), ("POST", 1, False), ("DELETE", 1, False),
                                           ("DELETE", 1, False)]
    assert "PRIVATE KEY" not in dry.text + answer.text + str(got)


def test_bad_uploads_change_nothing(sim: ClusterSimulator) -> None:
    rest, proxy = Rest(sim), sim.served_fingerprint(1, "proxy")
    cert, key, _ = issue(sim)
    _, other_key, _ = issue(sim)
    expired, expired_key, _ = issue(sim, past=True)
    cases = [
        ({"cert": cert, "private_key": other_key}, 400, "key_mismatch"),
        ({"cert": cert + client_ca("unrelated").pem, "private_key": key}, 400, "invalid_chain"),
        ({"cert": expired, "private_key": expired_key}, 406, "cert_expired"),
        ({"cert": "-----BEGIN CERTIFICATE-----\nxx\n", "private_key": key}, 400, "invalid_certificate"),
        ({"cert": cert, "private_key": key, "name": "proxy"}, 400, "invalid_request"),
        ({"cert": cert}, 400, "invalid_request"),
    ]
    for body, status, code in cases:
        for query in ("", "?dry_run=true"):
            answer = rest("POST", f"/v1/bdbs/1/certificates{query}", json=body)
            assert (answer.status_code, answer.json()["error_code"]) == (status, code), (code, query)
            assert answer.json()["description"].startswith("database 1") or code == "invalid_request"
    assert served(sim, 1) == [proxy] * 3
    assert post(rest, 9, cert, key).json()["error_code"] == "not_found"
    viewer = post(Rest(sim, basic="viewer"), 1, cert, key)
    assert viewer.status_code == 403 and served(sim, 1) == [proxy] * 3
    assert Rest(sim, basic="viewer")("GET", "/v1/bdbs/certificates").status_code == 200


def test_listing_filters_and_pages(sim: ClusterSimulator) -> None:
    rest = Rest(sim)
    for uid, days in ((1, 10), (2, 100), (3, 50)):  # 3 is a plain database: stored, not served
        cert, key, _ = issue(sim, days)
        assert post(rest, uid, cert, key).status_code == 200

    def listed(query: str) -> tuple[list[int], int]:
        body = rest("GET", f"/v1/bdbs/certificates{query}").json()
        return [item["bdb_uid"] for item in body["certificates"]], body["total"]

    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert listed("") == ([1, 2, 3], 3)
    assert listed(f"?expires_before={soon}") == ([1, 3], 2)
    assert listed("?tls_mode=disabled") == ([3], 1)
    assert listed("?page_size=2&page=2") == ([3], 3)
    for query in ("?page=0", "?page_size=1001", "?expires_before=soon", "?tls_mode=on"):
        assert rest("GET", f"/v1/bdbs/certificates{query}").json()["error_code"] == "invalid_parameter", query


def test_node_faults_on_database_endpoints(sim: ClusterSimulator) -> None:
    rest, proxy = Rest(sim), sim.served_fingerprint(1, "proxy")
    first, first_key, first_fp = issue(sim)
    sim.node_down(2)
    answer = post(rest, 1, first, first_key)
    assert answer.status_code == 409 and answer.json()["error_code"] == "nodes_not_updated"
    assert [sim.database_certs.served_fingerprint(uid, 1) for uid in (1, 2, 3)] == [first_fp, proxy, first_fp]
    sim.node_down(2, down=False)
    assert served(sim, 1) == [first_fp] * 3  # caught up when it came back
    second, second_key, second_fp = issue(sim)
    sim.fail_next(1, 500)
    assert post(rest, 1, second, second_key).status_code == 500 and served(sim, 1) == [first_fp] * 3
    # a lagging node: verification on the database endpoint fails there until the window ends
    sim.database_certs.stale(2, bdb_uid=1)
    assert post(rest, 1, second, second_key).status_code == 200
    assert served(sim, 1) == [second_fp, first_fp, second_fp]
    state = rest("GET", "/_sim/state").json()
    assert state["bdb_certificates"]["nodes"]["2"]["1"] == first_fp and state["faults"]["bdb_stale"]["2"]
    assert state["bdb_certificates"]["installed"] == {"1": second_fp} and state["bdb_certificates"]["nodes"]["1"] \
        == {"1": second_fp, "2": "proxy"}
    sim.database_certs.stale(2, seconds=0)
    assert served(sim, 1) == [second_fp] * 3
    faults = rest("POST", "/_sim/faults", json={"action": "bdb_stale", "uid": 3, "seconds": 30})
    assert faults.json()["bdb_stale"] == {"3": {"seconds": 30.0, "bdb_uid": None}}
    assert rest("DELETE", "/v1/bdbs/1/certificates").status_code == 200
    assert served(sim, 1) == [proxy, proxy, second_fp]  # node 3 still holds the database's own
    sim.clear_faults()
    assert served(sim, 1) == [proxy] * 3


def test_before_8_0_2_there_are_no_database_certificate_routes(tmp_path: Path) -> None:
    sim = start_simulator(tmp_path, version="7.22.2-14", nodes=1)
    try:
        rest = Rest(sim)
        cert, key, _ = issue(sim)
        for answer in (rest("GET", "/v1/bdbs/certificates"), post(rest, 1, cert, key),
                       rest("DELETE", "/v1/bdbs/1/certificates")):
            assert answer.status_code == 404 and answer.json()["error_code"] == "not_found"
        assert rest("GET", "/v1/bdbs").status_code == 200
    finally:
        sim.stop()
