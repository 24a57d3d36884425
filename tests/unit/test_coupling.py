"""The coupling graph from REST answers: matching ends, what each rotation touches, hostile input."""

from __future__ import annotations

from typing import Any

from support.certs import make_cert

from rotation.core import certs
from rotation.core.coupling import CouplingGraph, LinkKind
from rotation.core.coupling_data import ClusterLinks, anchors, parse_cluster, same_shape
from rotation.core.model import CertName


def pem(cn: str, issuer: Any = None) -> str:
    cert, _ = make_cert(issuer[1] if issuer else None, issuer[0] if issuer else None, cn=cn)
    return certs.cert_to_pem(cert)


PEMS = {name: pem(name) for name in ("east-proxy", "east-syncer", "west-proxy", "west-syncer", "app-client")}


def cluster(name: str, bdbs: list[Any], crdbs: list[Any] | None = None, addr: str = "") -> ClusterLinks:
    info = {"name": f"{name}.example", "proxy_certificate": PEMS.get(f"{name}-proxy"),
            "syncer_certificate": PEMS.get(f"{name}-syncer")}
    return parse_cluster(name, f"{name}.example", f"https://{name}.example:9443", info, [addr] if addr else [], bdbs,
                         crdbs or [])


def source_db(trusted: list[str], enforce: str = "enabled") -> dict[str, Any]:
    return {"uid": 1, "name": "db1", "port": 12000, "enforce_client_authentication": enforce,
            "authentication_ssl_client_certs": [{"client_cert": p} for p in trusted],
            "endpoints": [{"dns_name": "redis-12000.east.example", "addr": ["10.0.0.1"]}]}


def replica_db(uri: str, server_cert: str, **entry: Any) -> dict[str, Any]:
    return {"uid": 3, "port": 12003, "replica_sources": [{"uri": uri, "server_cert": server_cert, "status": "in-sync",
                                                          **entry}]}


def test_a_replica_of_link_matched_by_address_depends_on_proxy_and_syncer() -> None:
    east = cluster("east", [source_db([PEMS["west-syncer"], PEMS["app-client"]])])
    west = cluster("west", [replica_db("redis://redis-12000.east.example:12000", PEMS["east-proxy"])])
    graph = CouplingGraph.build([east, west])
    (link,) = graph.links
    assert (link.kind, link.source.label, link.replica.label) == (LinkKind.REPLICA_OF, "east db1", "west db3")
    assert link.dependency_labels == ["east/proxy", "west/syncer"] and link.in_sync
    proxy, syncer = graph.impact("east", CertName.PROXY), graph.impact("west", CertName.SYNCER)
    assert proxy.pins == (link,) and proxy.watch == (link,) and not proxy.trusts
    assert syncer.trusts == (link,) and syncer.coupled and not syncer.unmanaged
    assert not graph.impact("east", CertName.SYNCER).coupled and not graph.impact("west", CertName.PROXY).coupled
    assert graph.unknown_clients == {"east db1": 1}  # the app's certificate: maybe a replica outside


def test_an_unknown_address_is_matched_by_the_pinned_fingerprint() -> None:
    east = cluster("east", [source_db([PEMS["west-syncer"]])])
    west = cluster("west", [replica_db("redis://10.9.9.9:12000", PEMS["east-proxy"])])
    (link,) = CouplingGraph.build([east, west]).links
    assert link.source.cluster == "east" and link.source.db == 1


def test_no_syncer_dependency_with_an_own_client_certificate_or_no_client_check() -> None:
    for east_db, entry in ((source_db([PEMS["west-syncer"]]), {"client_cert": PEMS["app-client"]}),
                           (source_db([PEMS["west-syncer"]], enforce="disabled"), {})):
        east = cluster("east", [east_db])
        west = cluster("west", [replica_db("redis://10.0.0.1:12000", PEMS["east-proxy"], **entry)])
        graph = CouplingGraph.build([east, west])
        assert graph.links[0].dependency_labels == ["east/proxy"]
        assert not graph.impact("west", CertName.SYNCER).coupled


def test_a_source_outside_the_inventory_is_an_unmanaged_dependent() -> None:
    west = cluster("west", [replica_db("redis://10.7.7.7:12000", PEMS["app-client"])])
    graph = CouplingGraph.build([west])
    (link,) = graph.links
    assert link.source.label == "10.7.7.7:12000 (not in the inventory)"
    impact = graph.impact("west", CertName.SYNCER)
    assert impact.unmanaged == ("10.7.7.7:12000 (not in the inventory), source of west db3",) and not impact.watch
    unread = CouplingGraph.build([west], {"east": "cannot reach"})
    assert unread.impact("west", CertName.SYNCER).unread == ("east (cannot reach)",)
    assert unread.links[0].source.label.endswith("(not in the inventory, or a cluster not read)")


def test_active_active_needs_a_force_update_for_proxy_and_syncer_and_names_outsiders() -> None:
    crdb = {"guid": "g-1", "name": "aa", "instances": [
        {"id": 1, "cluster": {"name": "east.example", "url": "https://east.example:9443"}},
        {"id": 2, "cluster": {"name": "west.example", "url": "https://10.0.2.1:9443"}},
        {"id": 3, "cluster": {"name": "north.example", "url": "https://10.0.3.1:9443"}}]}

    def instance(local: int) -> dict[str, Any]:
        return {"uid": 2, "port": 12010, "crdt_guid": "g-1", "crdt_replica_id": local,
                "crdt_sources": [{"uid": peer, "uri": f"redis://10.0.{peer}.1:12010", "status": "in-sync"}
                                 for peer in (1, 2, 3) if peer != local]}

    graph = CouplingGraph.build([cluster("east", [instance(1)], [crdb]),
                                 cluster("west", [instance(2)], [crdb], addr="10.0.2.1")])
    assert len(graph.links) == 4 and graph.outsiders == {"g-1": ["north.example"]}
    for cert in (CertName.PROXY, CertName.SYNCER):
        impact = graph.impact("west", cert)
        assert [c.guid for c in impact.crdbs] == ["g-1"] and len(impact.watch) == 2  # not the outsider's
        assert impact.unmanaged == ("CRDB aa participant north.example",)
    api = graph.impact("east", CertName.API)
    assert not api.coupled and "CRDB aa (g-1): its peers call this API" in api.dependents()[0]


def test_hostile_answers_are_skipped_not_trusted() -> None:
    junk: list[Any] = [None, 7, "x", {"uid": "nope"}, {"uid": 5, "replica_sources": "all"},
                       {"uid": 6, "replica_sources": [None, {"uri": 12, "server_cert": ["x"]}],
                        "authentication_ssl_client_certs": [{"client_cert": "-----BEGIN CERTIFICATE-----\nzz"}]}]
    parsed = cluster("west", junk, crdbs=[{"guid": 1}, {"guid": "g", "instances": [{"id": "x"}, 3]}])
    assert [db.uid for db in parsed.databases] == [5, 6] and [c.guid for c in parsed.crdbs] == ["g"]
    graph = CouplingGraph.build([parsed])
    assert graph.links[0].source.cluster is None and graph.links[0].entry.server_cert is None
    assert not anchors(["not a pem"], PEMS["east-proxy"])


def test_anchors_and_the_shape_of_a_new_pin() -> None:
    root_cert, root_key = make_cert(ca=True, cn="Root")
    leaf = pem("leaf", ("Root", root_key))
    root = certs.cert_to_pem(root_cert)
    assert anchors([leaf], leaf) and anchors([root], leaf) and anchors([PEMS["app-client"], root], leaf + root)
    assert not anchors([PEMS["east-proxy"]], leaf)
    assert same_shape(PEMS["east-proxy"], leaf + root) == leaf  # a pinned leaf gets the new leaf
    assert same_shape(PEMS["east-proxy"] + root, leaf + root) == leaf + root  # a pinned chain, the new chain


def test_a_name_under_two_fqdns_belongs_to_the_longer_one() -> None:
    parent = parse_cluster("corp", "example", "https://10.1.0.1:9443", {}, [], [{"uid": 9, "port": 12009}], [])
    east = cluster("east", [source_db([])])
    west = cluster("west", [replica_db("redis://redis-12000.east.example:12000", PEMS["app-client"])])
    (link,) = CouplingGraph.build([parent, east, west]).links
    assert link.source.cluster == "east"


def test_replication_without_tls_depends_on_no_certificate() -> None:
    east = cluster("east", [source_db([PEMS["west-syncer"]])])
    plain = {"uid": 3, "port": 12003, "replica_sources": [{"uri": "redis://10.0.0.1:12000", "encryption": False,
                                                           "status": "in-sync"}]}
    graph = CouplingGraph.build([east, cluster("west", [plain])])
    assert graph.links[0].depends_on == () and graph.links[0].source.cluster == "east"
    assert not graph.impact("east", CertName.PROXY).coupled and not graph.impact("west", CertName.SYNCER).coupled
