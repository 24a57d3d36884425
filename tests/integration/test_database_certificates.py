"""Per-database certificates (RS 8.0.2+): a database's own certificate rotates through the one
pipeline (RS's dry run, POST, verified by SNI handshakes on that database's endpoint on every node)
while the other databases keep the cluster's proxy certificate; a failed verify rolls back to the
exact previous state: the previous own pair, or DELETE back to proxy."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from support.cluster import handshake_fingerprint, write_inventory
from support.rest import FQDN, Rest
from support.rotate import rotate_here

from rotation.adapters.metrics import registry_for
from rotation.config import Inventory, load_inventory
from rotation.core import certs
from rotation.core.model import Outcome, RotationRecord
from rotation.simulator import ClusterSimulator
from rotation.usecases.check import check_clusters
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate.run import RotationOptions
from rotation.usecases.scan import scan_cluster

# default databases: db1 = TLS on every node (12000), db2 = TLS on node 1 only (12001), plain (12002)


@pytest.fixture
def inventory(sim: ClusterSimulator, ca_files: tuple[Path, Path], tmp_path: Path) -> Inventory:
    return load_inventory(write_inventory(tmp_path / "inv.yaml", sim, ca_files,
                                          cluster_overrides={"databases": {"db1": {}, "2": {}}}))


def served(sim: ClusterSimulator, port: int) -> list[str]:
    nodes = sim.node_addresses if port == 12000 else sim.node_addresses[:1]
    return [handshake_fingerprint(address, port, f"redis-{port}.{FQDN}") for address in nodes]


def rotate(inventory: Inventory, name: str, deadline: float = 5) -> RotationRecord:
    options = RotationOptions(poll_interval=0.05, push_backoff=0.05, verify_deadline=timedelta(seconds=deadline))
    (record,) = rotate_here(inventory, "sim", [name], options)
    return record


def test_a_database_certificate_rotates_on_its_own_endpoint(sim: ClusterSimulator, inventory: Inventory,
                                                            state_dir: Path) -> None:
    proxy = sim.served_fingerprint(1, "proxy")
    with ServiceContext(inventory=lambda: inventory) as ctx:
        scanned = scan_cluster(ctx, "sim")  # beat's scan: the databases are due like any certificate (5 days left)
    assert {"db:db1", "db:2"} <= set(scanned.due)
    metrics = generate_latest(registry_for(ctx.state)).decode()
    assert re.search(r'rotation_certificate_expiry_timestamp_seconds\{address="[\d.]+",cert="db:db1",cluster="sim",'
                     r'endpoint="[\d.]+:12000",node="3"\}', metrics), metrics
    first = rotate(inventory, "db:db1")
    assert first.outcome is Outcome.VERIFIED, first.error
    assert [r.id for r in ctx.state.history("sim", "db:db1")] == [first.id]
    assert served(sim, 12000) == [first.new_fingerprint] * 3 and served(sim, 12001) == [proxy]
    assert sim.database_certs.requests == [("POST", 1, True), ("POST", 1, False)]  # RS's dry run first
    assert set(first.nodes) == {f"db:db1@node{n} {a}:12000" for n, a in enumerate(sim.node_addresses, 1)} | {
        "db:db1@cluster GET /v1/bdbs/1/certificates"}
    assert first.old_fingerprint == proxy
    # the cluster's proxy rotation now leaves db1 alone: its endpoints are no longer proxy's
    rotated_proxy = rotate(inventory, "proxy")
    assert rotated_proxy.outcome is Outcome.VERIFIED, rotated_proxy.error
    assert not any("12000" in label for label in rotated_proxy.nodes)
    assert served(sim, 12000) == [first.new_fingerprint] * 3 and served(sim, 12001) == [rotated_proxy.new_fingerprint]
    second = rotate(inventory, "db:db1")  # own -> own: the pair posted before is the rollback's
    assert second.outcome is Outcome.VERIFIED, second.error
    assert second.old_fingerprint == first.new_fingerprint and served(sim, 12000) == [second.new_fingerprint] * 3
    planted = sim.database_certs.install(3)  # not managed, expires in 5 days: the fleet view finds it
    report = check_clusters(inventory, ["sim"])
    rows = {(r["cert"], r["node"]): r for r in report.rows}
    assert {("db:db1", "1"), ("db:db1", "3"), ("db:2", "1"), ("proxy", "1")} <= set(rows)
    assert ("proxy", "2") not in rows  # db2 binds node 1 only, db1 is its own now
    fleet = rows[("db:plain", "api")]
    assert fleet["fingerprint"] == planted and fleet["status"] == "due" and "not managed" in fleet["reason"]
    assert report.exit_code == 1


def test_a_failed_verify_deletes_back_to_the_proxy_certificate(sim: ClusterSimulator, inventory: Inventory,
                                                               state_dir: Path) -> None:
    proxy = sim.served_fingerprint(1, "proxy")
    sim.database_certs.stale(2, bdb_uid=1)  # node 2 keeps serving what db1 had
    record = rotate(inventory, "db:db1", deadline=1)
    assert record.outcome is Outcome.ROLLED_BACK and "lagging" in (record.error or "")
    assert [s.name for s in record.steps][-2:] == ["rollback", "verify-rollback"]
    assert sim.database_certs.requests == [("POST", 1, True), ("POST", 1, False), ("DELETE", 1, False)]
    sim.database_certs.stale(2, seconds=0)
    assert served(sim, 12000) == [proxy] * 3
    assert Rest(sim)("GET", "/v1/bdbs/1/certificates").status_code == 404


def test_a_failed_verify_posts_the_previous_pair_back(sim: ClusterSimulator, inventory: Inventory,
                                                      state_dir: Path) -> None:
    first = rotate(inventory, "db:2")
    assert first.outcome is Outcome.VERIFIED, first.error
    sim.database_certs.stale(1, bdb_uid=2)
    record = rotate(inventory, "db:2", deadline=1)
    assert record.outcome is Outcome.ROLLED_BACK, record.error
    assert sim.database_certs.requests[-2:] == [("POST", 2, False), ("POST", 2, False)]
    sim.database_certs.stale(1, seconds=0)
    assert served(sim, 12001) == [first.new_fingerprint]
    back = Rest(sim)("GET", "/v1/bdbs/2/certificates").json()["cert"]
    assert certs.fingerprint(certs.load_certificates(back, where="GET")[0]) == first.new_fingerprint


def test_an_own_certificate_rotation_did_not_install_is_refused(sim: ClusterSimulator, inventory: Inventory,
                                                                state_dir: Path) -> None:
    planted = sim.database_certs.install(1)
    record = rotate(inventory, "db:db1")
    assert record.outcome is Outcome.REFUSED and "did not install" in (record.error or "")
    assert sim.database_certs.requests == [] and served(sim, 12000) == [planted] * 3


def test_one_database_under_two_inventory_keys_is_one_lock(sim: ClusterSimulator, ca_files: tuple[Path, Path],
                                                           tmp_path: Path, state_dir: Path) -> None:
    """`db:db1` and `db:1` are the same database (by name, by uid): while a rotation of one holds its lock,
    a rotation of the other is refused as in progress, nothing posted (else two rotations of one
    certificate run at once, and each may roll back over the other)."""
    by_uid = load_inventory(write_inventory(tmp_path / "by-uid.yaml", sim, ca_files,
                                            cluster_overrides={"databases": {"1": {}}}))
    identity = by_uid.cluster("sim").identity
    with ServiceContext(inventory=lambda: by_uid) as ctx, ctx.state.hold(identity, "db:db1", "rotation of db:db1"):
        record = rotate(by_uid, "db:1")
    assert record.outcome is Outcome.REFUSED and "already in progress (rotation of db:db1)" in (record.error or "")
    assert sim.database_certs.requests == []


def test_status_names_who_holds_the_lock_of_a_database_listed_by_uid(sim: ClusterSimulator,
                                                                      ca_files: tuple[Path, Path],
                                                                      tmp_path: Path, state_dir: Path) -> None:
    """A database's rotation locks it under the name RS gives it (`db:db1`); the inventory lists it by uid
    (`db:1`), and `status` looked for a `db:1` lock: the rotation running on it was not shown. The scan
    keeps the database's lock name, and status reads the holder under it (no REST call)."""
    from rotation.usecases.status import service_status

    by_uid = load_inventory(write_inventory(tmp_path / "by-uid.yaml", sim, ca_files,
                                            cluster_overrides={"databases": {"1": {}}}))
    identity = by_uid.cluster("sim").identity
    with ServiceContext(inventory=lambda: by_uid) as ctx:
        scan_cluster(ctx, "sim")
        with ctx.state.hold(identity, "db:db1", "rotation r-1 on worker w"):
            rows = {row["cert"]: row for row in service_status(ctx)["certificates"]}
            assert "rotation r-1 on worker w" in (rows["db:1"]["in_flight"] or "")
            assert rows["cm"]["in_flight"] is None
        assert service_status(ctx)["certificates"][0]["in_flight"] is None
