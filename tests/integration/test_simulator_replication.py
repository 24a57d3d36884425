"""Simulated clusters linked by real replication: Replica Of and Active-Active over real TLS.

Certificates are rotated through the normal certificate endpoint of the REST API; link status
comes from the syncers' real handshakes, read back through the REST API as the product would.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.cluster import free_loopback_base, handshake_fingerprint

from rotation.simulator import ClusterSimulator
from rotation.simulator.fleet import CRDB_PORT, Fleet
from rotation.simulator.tls import CertificateAuthority


class Rest:
    """httpx against node 1's REST API of one simulated cluster (verified with its CA)."""

    def __init__(self, sim: ClusterSimulator) -> None:
        self.sim = sim
        self.base = f"https://{sim.node_addresses[0]}:{sim.config.api_port}"
        self.client = httpx.Client(verify=ssl.create_default_context(cafile=str(sim.ca_path)), timeout=10)

    def __call__(self, method: str, path: str, user: str = "admin", **kwargs: Any) -> httpx.Response:
        auth = {"admin": (self.sim.admin_username, self.sim.admin_password),
                "viewer": (self.sim.viewer_username, self.sim.viewer_password)}[user]
        return self.client.request(method, self.base + path, auth=auth,
                                   extensions={"sni_hostname": self.sim.config.fqdn}, **kwargs)

    def rotate(self, name: str, cert: str, key: str) -> None:
        answer = self("PUT", "/v1/cluster/certificates", json={"certificates": [
            {"name": name, "certificate": cert, "key": key}]})
        assert answer.status_code == 200, answer.text

    def source(self, db: int = 1, index: int = 0, field: str = "replica_sources") -> dict[str, Any]:
        answer = self("GET", f"/v1/bdbs/{db}")
        assert answer.status_code == 200, answer.text
        return answer.json()[field][index]


@pytest.fixture(scope="module")
def new_ca() -> CertificateAuthority:
    now = dt.datetime.now(dt.UTC)
    return CertificateAuthority.create("rotation test", now - dt.timedelta(hours=1), now + dt.timedelta(days=30))


def issue(ca: CertificateAuthority, sim: ClusterSimulator) -> tuple[str, str]:
    now = dt.datetime.now(dt.UTC)
    cert, key = ca.issue(sim.config.fqdn, now - dt.timedelta(minutes=5), now + dt.timedelta(days=20))
    return cert + ca.pem, key


@pytest.fixture
def make_fleet(tmp_path: Path) -> Iterator[Any]:
    fleets: list[Fleet] = []
    clients: list[Rest] = []

    def make(names: list[str], **kwargs: Any) -> tuple[Fleet, dict[str, Rest]]:
        fleet = Fleet(names, state_dir=tmp_path / f"fleet{len(fleets)}",
                      first_addresses=[free_loopback_base() for _ in names], **kwargs).start()
        fleets.append(fleet)
        rests = {name: Rest(fleet[name]) for name in names}
        clients.extend(rests.values())
        return fleet, rests

    yield make
    for fleet in fleets:
        fleet.stop()
    for client in clients:
        client.client.close()


def ping_presenting(addr: str, port: int, server_pem: str, cert: str, key: str) -> bytes:
    """An independent syncer: stdlib ssl, the given client pair, PING. b'' when dropped."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cadata=server_pem)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    fd, path = tempfile.mkstemp()
    with os.fdopen(fd, "w") as fh:
        fh.write(key + cert)
    context.load_cert_chain(path)
    os.unlink(path)
    try:
        with socket.create_connection((addr, port), timeout=5) as raw, context.wrap_socket(raw) as tls:
            tls.sendall(b"PING\r\n")
            return tls.recv(100)
    except (ConnectionResetError, ssl.SSLError):
        return b""


# -- Replica Of ------------------------------------------------------------------------------------


def test_replica_syncer_rotation_breaks_the_link_until_the_source_trusts_it(
    make_fleet: Any, new_ca: CertificateAuthority
) -> None:
    fleet, rest = make_fleet(["east", "west"])
    fleet.replica_of("east", "west")
    east, west = fleet["east"], fleet["west"]
    linked = rest["west"].source()
    assert linked["status"] == "in-sync" and linked["last_error"] == "" and linked["last_update"]
    assert linked["server_cert"] == east.cluster_cert_pem("proxy") and "client_key" not in linked
    bdb = rest["west"]("GET", "/v1/bdbs/1").json()
    assert bdb["replica_sync"] == "enabled" and bdb["sync_sources"][0]["status"] == "in-sync"
    old_syncer = west.cluster_cert_pem("syncer")
    listed = rest["east"]("GET", "/v1/bdbs/1").json()["authentication_ssl_client_certs"]
    assert listed == [{"client_cert": old_syncer}]

    addr, port, sni = fleet.endpoint("east")  # a probe without a client certificate still handshakes
    assert handshake_fingerprint(addr, port, sni) == east.served_fingerprint(1, "proxy")
    plain = ssl.create_default_context(cadata=east.ca_pem)
    with socket.create_connection((addr, port), timeout=5) as raw, plain.wrap_socket(raw, server_hostname=sni) as tls:
        tls.sendall(b"PING\r\n")
        try:
            answer = tls.recv(100)
        except ConnectionResetError:
            answer = b""
        assert answer == b""  # ... but gets no answer from a database that wants one

    cert, key = issue(new_ca, west)
    rest["west"].rotate("syncer", cert, key)
    broken = rest["west"].source()
    assert broken["status"] == "out-of-sync"
    assert "client certificate refused by the source" in broken["last_error"]
    assert ping_presenting(addr, port, east.cluster_cert_pem("proxy"), cert, key) == b""  # really refused

    both = [{"client_cert": old_syncer}, {"client_cert": cert}]
    assert rest["east"]("PUT", "/v1/bdbs/1", json={"authentication_ssl_client_certs": both}).status_code == 200
    assert ping_presenting(addr, port, east.cluster_cert_pem("proxy"), cert, key) == b"+PONG\r\n"
    assert rest["west"].source()["status"] == "in-sync"
    only_new = [{"client_cert": cert}]
    assert rest["east"]("PUT", "/v1/bdbs/1", json={"authentication_ssl_client_certs": only_new}).status_code == 200
    assert rest["west"].source()["status"] == "in-sync"


def test_source_proxy_rotation_breaks_the_link_until_server_cert_follows(
    make_fleet: Any, new_ca: CertificateAuthority
) -> None:
    fleet, rest = make_fleet(["east", "west"], sync_interval=0.1)
    fleet.replica_of("east", "west")
    assert rest["west"].source()["status"] == "in-sync"
    cert, key = issue(new_ca, fleet["east"])
    rest["east"].rotate("proxy", cert, key)
    # the periodic check sees it without any read
    row = fleet["west"].replication.wait_for_status(1, "out-of-sync")[0]
    assert "source certificate not trusted" in row["last_error"]
    broken = rest["west"].source()
    assert broken["status"] == "out-of-sync" and "source certificate not trusted" in broken["last_error"]

    source = dict(broken, server_cert=cert)  # GET-modify-PUT: the read-only fields are ignored
    answer = rest["west"]("PUT", "/v1/bdbs/1", json={"replica_sources": [source]})
    assert answer.status_code == 200, answer.text
    assert rest["west"].source()["status"] == "in-sync"


# -- Active-Active ---------------------------------------------------------------------------------


def crdt_status(rest: Rest) -> dict[str, str]:
    """Peer uri -> link status of the cluster's instance (its bdb's crdt_sources)."""
    bdb = rest("GET", "/v1/bdbs/2").json()
    return {s["uri"]: s["status"] + (f": {s['last_error']}" if s["last_error"] else "") for s in bdb["crdt_sources"]}


def test_active_active_breaks_on_proxy_or_syncer_change_until_the_force_update(
    make_fleet: Any, new_ca: CertificateAuthority, caplog: pytest.LogCaptureFixture
) -> None:
    fleet, rest = make_fleet(["east", "west", "north"])
    guid = fleet.crdb()
    crdb = rest["west"]("GET", f"/v1/crdbs/{guid}").json()
    assert [i["cluster"]["name"] for i in crdb["instances"]] == [f"{n}.sim.local" for n in ("east", "west", "north")]
    assert crdb["encryption"] is True and crdb["local_databases"] == [{"bdb_uid": "2", "id": 2}]
    assert fleet["west"].admin_password not in rest["west"]("GET", "/v1/crdbs").text
    for name in fleet.clusters:
        bdb = rest[name]("GET", "/v1/bdbs/2").json()
        assert bdb["crdt"] is True and bdb["crdt_guid"] == guid and bdb["crdt_config_version"] == 1
        assert len(bdb["authentication_ssl_crdt_certs"]) == 2
        assert all(status == "in-sync" for status in crdt_status(rest[name]).values())
    north_uri = "redis://{}:{}".format(*fleet.endpoint("north", 2)[:2])

    rest["north"].rotate("proxy", *issue(new_ca, fleet["north"]))
    for name in ("east", "west"):
        status = crdt_status(rest[name])
        assert status.pop(north_uri).startswith("out-of-sync: peer certificate not trusted")
        assert set(status.values()) == {"in-sync"}
    assert set(crdt_status(rest["north"]).values()) == {"in-sync"}
    report = rest["east"]("GET", f"/v1/crdbs/{guid}/health_report").json()[0]
    down = {c["name"]: c["replication_links"][0]["status"] for c in report["connections"]}
    assert down == {"west.sim.local": "up", "north.sim.local": "down"}

    caplog.set_level(logging.WARNING, "rotation.simulator.crdb")
    answer = rest["east"]("POST", f"/v1/crdbs/{guid}/updates", json={"force_update": True})
    assert answer.status_code == 200 and answer.json()["operation"] == "update_crdb"
    task = fleet["east"].crdbs.wait_task(answer.json()["id"])
    assert task["status"] == "finished" and task["errors"] == []
    assert rest["east"]("GET", f"/v1/crdb_tasks/{task['id']}").json()["status"] == "finished"
    assert any("force update" in r.getMessage() and guid in r.getMessage() for r in caplog.records)
    assert fleet["east"].crdbs.force_update_count(guid) == 1
    for name in fleet.clusters:
        assert rest[name]("GET", "/v1/bdbs/2").json()["crdt_config_version"] == 2
        assert set(crdt_status(rest[name]).values()) == {"in-sync"}

    # a syncer change breaks the other direction: the peers refuse the new client certificate
    rest["west"].rotate("syncer", *issue(new_ca, fleet["west"]))
    refused = crdt_status(rest["west"])
    assert all(s.startswith("out-of-sync: client certificate refused by the peer") for s in refused.values())
    assert fleet["north"].crdbs.force_update(guid)["status"] == "finished"  # any participant coordinates
    assert set(crdt_status(rest["west"]).values()) == {"in-sync"}


# -- writes, faults ----------------------------------------------------------------------------------


def test_put_bdb_refuses_bad_input_with_the_field_and_changes_nothing(
    make_fleet: Any, new_ca: CertificateAuthority
) -> None:
    from rotation.simulator import Database
    from rotation.simulator.fleet import FLEET_DATABASES

    fleet, rest = make_fleet(["east", "west"], databases=[*FLEET_DATABASES, Database(3, "plain", 12002, False)])
    fleet.replica_of("east", "west")
    cert, key = issue(new_ca, fleet["west"])
    _, other_key = issue(new_ca, fleet["west"])
    uri = "redis://{}:{}".format(*fleet.endpoint("east")[:2])
    src = {"uri": uri, "server_cert": cert}
    cases: list[tuple[int, dict[str, Any], str, str]] = [
        (1, {}, "invalid_schema", "non-empty"),
        (1, {"name": "renamed"}, "unsupported_field", "name:"),
        (1, {"crdt_sources": []}, "crdt_managed", "crdt_sources:"),
        (1, {"replica_sources": [{"uri": "http://h:1", "server_cert": cert}]}, "invalid_uri", "replica_sources[0].uri"),
        (1, {"replica_sources": [{"uri": uri}]}, "invalid_schema", "replica_sources[0].server_cert: required"),
        (1, {"replica_sources": [src, {**src, "server_cert": "junk"}]}, "invalid_certificate",
         "replica_sources[1].server_cert"),
        (1, {"replica_sources": [{**src, "client_cert": cert}]}, "invalid_schema", "go together"),
        (1, {"replica_sources": [{**src, "client_cert": cert, "client_key": other_key}]}, "key_mismatch",
         "replica_sources[0].client_key"),
        (1, {"replica_sources": [{**src, "shard": 1}]}, "invalid_schema", "unknown properties ['shard']"),
        (1, {"authentication_ssl_client_certs": [{"cert": cert}]}, "invalid_schema",
         "authentication_ssl_client_certs[0]"),
        (1, {"authentication_ssl_client_certs": [{"client_cert": "junk"}]}, "invalid_certificate",
         "authentication_ssl_client_certs[0].client_cert"),
        (1, {"replica_sync": "maybe"}, "invalid_value", "replica_sync"),
        (3, {"authentication_ssl_client_certs": [{"client_cert": cert}]}, "tls_required", "plain"),
    ]
    before = {name: r("GET", "/v1/bdbs").json() for name, r in rest.items()}
    for db, body, code, fragment in cases:
        answer = rest["west"]("PUT", f"/v1/bdbs/{db}", json=body)
        assert (answer.status_code, answer.json()["error_code"]) == (400, code), (body, answer.text)
        assert fragment in answer.json()["description"], answer.text
        assert key not in answer.text and other_key not in answer.text
    viewer = rest["east"]("PUT", "/v1/bdbs/1", user="viewer", json={"replica_sync": "paused"})
    assert viewer.status_code == 403
    assert rest["east"]("GET", "/v1/bdbs/9").status_code == 404
    assert rest["east"]("PUT", "/v1/bdbs/1", content=b"{}", headers={"content-type": "text/plain"}).status_code == 400
    after = {name: r("GET", "/v1/bdbs").json() for name, r in rest.items()}
    for bdbs in (*before.values(), *after.values()):
        for bdb in bdbs:
            for source in bdb["replica_sources"] + bdb["sync_sources"]:
                source.pop("lag"), source.pop("last_update")
    assert after == before
    with_key = {**src, "client_cert": cert, "client_key": key}
    assert rest["west"]("PUT", "/v1/bdbs/1", json={"replica_sources": [with_key]}).status_code == 200
    assert key not in rest["west"]("GET", "/v1/bdbs/1").text  # client_key is write-only


def test_faults_put_refused_frozen_link_and_unreachable_source(make_fleet: Any, new_ca: CertificateAuthority) -> None:
    fleet, rest = make_fleet(["east", "west"])
    fleet.replica_of("east", "west")
    listed = rest["east"]("GET", "/v1/bdbs/1").json()["authentication_ssl_client_certs"]
    fault = rest["east"]("POST", "/_sim/links", json={"action": "fail_next_db_update", "status": 409})
    assert fault.status_code == 200
    refused = rest["east"]("PUT", "/v1/bdbs/1", json={"authentication_ssl_client_certs": []})
    assert refused.status_code == 409 and refused.json()["error_code"] == "db_busy"
    assert rest["east"]("GET", "/v1/bdbs/1").json()["authentication_ssl_client_certs"] == listed

    # frozen: out of sync on any other certificate, in sync again back on the old ones
    old = rest["east"]("GET", "/v1/cluster/certificates").json()
    old_proxy = {"certificate": old["proxy_cert"], "key": old["proxy_key"]}
    assert rest["west"]("POST", "/_sim/links", json={"action": "freeze_link", "db": 1}).json()[0]["frozen"]
    cert, key = issue(new_ca, fleet["east"])
    rest["east"].rotate("proxy", cert, key)
    moved = dict(rest["west"].source(), server_cert=cert)
    assert rest["west"]("PUT", "/v1/bdbs/1", json={"replica_sources": [moved]}).status_code == 200
    stalled = rest["west"].source()
    assert stalled["status"] == "syncing" and "simulated stall" in stalled["last_error"]
    rest["east"].rotate("proxy", old_proxy["certificate"], old_proxy["key"])
    back = dict(stalled, server_cert=old_proxy["certificate"])
    assert rest["west"]("PUT", "/v1/bdbs/1", json={"replica_sources": [back]}).status_code == 200
    assert rest["west"].source()["status"] == "in-sync"

    fleet.cluster_down("east")
    unreachable = rest["west"].source()
    assert unreachable["status"] == "out-of-sync" and "source unreachable" in unreachable["last_error"]
    fleet.cluster_down("east", down=False)
    assert rest["west"].source()["status"] == "in-sync"


def test_crdb_faults_and_bad_requests(make_fleet: Any) -> None:
    fleet, rest = make_fleet(["east", "west"])
    guid = fleet.crdb()
    versions = lambda: {n: r("GET", "/v1/bdbs/2").json()["crdt_config_version"] for n, r in rest.items()}  # noqa: E731
    fleet["west"].replication.fail_next_db_update(1, 409)
    task = fleet["east"].crdbs.force_update(guid)
    assert task["status"] == "failed"
    assert [(e["cluster_name"], e["error_code"]) for e in task["errors"]] == [("west.sim.local", "db_busy")]
    assert versions() == {"east": 2, "west": 1}  # committed where accepted, named where refused
    assert fleet["east"].crdbs.force_update(guid)["status"] == "finished"
    assert versions() == {"east": 3, "west": 3}

    fleet.cluster_down("west")
    task = fleet["east"].crdbs.force_update(guid)
    assert task["status"] == "failed" and task["errors"][0]["error_code"] == "peer_unreachable"
    assert fleet["west"].admin_password not in str(task)
    fleet.cluster_down("west", down=False)
    assert versions() == {"east": 3, "west": 3}  # nothing committed when a participant cannot be read

    good = {"name": "x", "encryption": True, "default_db_config": {"port": CRDB_PORT},
            "instances": [{"cluster": {"name": "east.sim.local", "url": "https://127.0.0.1:9443",
                                       "credentials": {"username": "a", "password": "b"}}},
                          {"cluster": {"name": "west.sim.local", "url": "https://127.0.0.2:9443",
                                       "credentials": {"username": "a", "password": "b"}}}]}
    bad = [({**good, "encryption": False}, "unsupported"),
           ({**good, "instances": good["instances"][:1]}, "invalid_schema"),
           ({**good, "instances": [good["instances"][1], {"cluster": {**good["instances"][1]["cluster"],
                                                                      "name": "north.sim.local"}}]}, "not_participant"),
           ({**good, "default_db_config": {"port": 12999}}, "no_such_database")]
    for body, code in bad:
        answer = rest["east"]("POST", "/v1/crdbs", json=body)
        assert (answer.status_code, answer.json()["error_code"]) == (400, code), answer.text
    add = rest["east"]("POST", f"/v1/crdbs/{guid}/updates", json={"add_instances": [{}]})
    assert add.status_code == 400 and add.json()["error_code"] == "unsupported"
    assert rest["east"]("GET", "/v1/crdbs/nope").status_code == 404
    assert rest["east"]("GET", "/v1/crdb_tasks/nope").status_code == 404
    assert len(rest["east"]("GET", "/v1/crdbs").json()) == 1
