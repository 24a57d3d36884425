"""Rotating proxy and syncer of clusters linked by Replica Of and Active-Active (simulated fleet).

Every rotation here runs the one path (``rotate_and_record``), which builds the replication
companion from the coupling graph it reads; link status comes from the simulator's real
syncer handshakes, read back independently (``fleet.check_links``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from support.clock import FakeClock
from support.cluster import free_loopback_base
from support.fleet import fleet_inventory, load_fleet_inventory
from support.processes import ROOT, RedisServer
from support.rotate import rotate_here
from typer.testing import CliRunner

from rotation.adapters.cluster import ClusterSession, open_cluster
from rotation.cli.main import app
from rotation.config import Inventory
from rotation.core.coupling_data import leaf_fingerprint
from rotation.core.model import CertName, Outcome, RotationRecord, Step
from rotation.simulator import Database
from rotation.simulator.fleet import FLEET_DATABASES, Fleet
from rotation.usecases.context import ServiceContext
from rotation.usecases.coupling import read_graph
from rotation.usecases.rotate.replication import ReplicationCompanion
from rotation.usecases.rotate.run import RotationOptions

runner = CliRunner()


def links(fleet: Fleet) -> dict[str, str]:
    """Every link of the fleet, checked now: "cluster db kind source" -> status."""
    return {f"{name} db{row['db']} {row['kind']} {row['source']}": row["status"]
            for name, rows in fleet.check_links().items() for row in rows}


def rotate(inventory: Inventory, cluster: str, cert: str, **options: Any) -> RotationRecord:
    (record,) = rotate_here(inventory, cluster, [cert], RotationOptions(poll_interval=0.05, push_backoff=0.05,
                                                                         **options))
    return record


def step(record: RotationRecord, name: str) -> Step:
    return next(s for s in record.steps if s.name == name)


def test_replica_of_syncer_then_proxy_rotation_keeps_the_link_in_sync(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path) -> None:
    fleet: Fleet = linked_fleet(["east", "west"])
    fleet.replica_of("east", "west")
    inventory = load_fleet_inventory(tmp_path, fleet, ca_files)
    east, west = fleet["east"], fleet["west"]
    assert set(links(fleet).values()) == {"in-sync"}
    seen: dict[str, set[str]] = {}

    def watch(record: RotationRecord, current: Step) -> None:  # the link as every step ends
        if current.finished_at is not None:
            seen[current.name] = set(links(fleet).values())

    record = rotate(inventory, "west", "syncer", progress=watch)
    assert record.outcome is Outcome.VERIFIED, record.error
    names = [s.name for s in record.steps]
    assert names.index("prepare:replication") < names.index("push") < names.index("follow_up:replication") \
        < names.index("finalize:replication")
    assert seen["push"] == seen["verify"] == {"in-sync"}  # make before break: never out of sync
    listed = east.replication.bdb_fields(1)["authentication_ssl_client_certs"]
    assert [leaf_fingerprint(e["client_cert"]) for e in listed] == [record.new_fingerprint]  # the old one is gone
    assert "no longer trusts the old syncer" in step(record, "finalize:replication").detail
    assert set(links(fleet).values()) == {"in-sync"}

    record = rotate(inventory, "east", "proxy", progress=watch)
    assert record.outcome is Outcome.VERIFIED, record.error
    assert seen["verify"] == {"out-of-sync"}  # RS keeps one pinned certificate: broken until the follow-up
    assert seen["follow_up:replication"] == {"in-sync"}
    pinned = west.replication.bdb_fields(1)["replica_sources"][0]["server_cert"]
    assert leaf_fingerprint(pinned) == record.new_fingerprint
    assert "west db1 pins the new proxy" in step(record, "replication:west/db1").detail
    assert set(links(fleet).values()) == {"in-sync"}


def test_active_active_proxy_rotation_force_updates_each_crdb_once_in_turn(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path) -> None:
    fleet: Fleet = linked_fleet(["east", "west", "north"],
                                databases=[*FLEET_DATABASES, Database(3, "aa2", 12020, True, "all-nodes")])
    guids = [fleet.crdb(), fleet.crdb(name="aa2", port=12020)]
    inventory = load_fleet_inventory(tmp_path, fleet, ca_files)

    record = rotate(inventory, "north", "proxy")
    assert record.outcome is Outcome.VERIFIED, record.error
    assert [fleet["north"].crdbs.force_update_count(guid) for guid in guids] == [1, 1]
    assert [fleet[n].crdbs.force_update_count(guid) for n in ("east", "west") for guid in guids] == [0] * 4
    updates = [s for s in record.steps if s.name.startswith("replication:crdb")]
    assert [s.name for s in updates] == ["replication:crdb aa", "replication:crdb aa2"]
    assert updates[0].finished_at and updates[0].finished_at <= updates[1].started_at  # one CRDB at a time
    assert all("6 link(s) in sync" in s.detail for s in updates)  # every instance, waited for per CRDB
    rows = links(fleet)
    assert len(rows) == 12 and set(rows.values()) == {"in-sync"}
    for name in ("east", "west"):  # the peers now pin north's new proxy
        pinned = [s["server_cert"] for db in (2, 3) for s in fleet[name].replication.bdb_fields(db)["crdt_sources"]]
        assert record.new_fingerprint in {leaf_fingerprint(pem) for pem in pinned}


def test_peer_unreachable_during_the_force_update_is_rolled_back(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path) -> None:
    fleet: Fleet = linked_fleet(["east", "west"])
    fleet.crdb()
    inventory = load_fleet_inventory(tmp_path, fleet, ca_files)
    fleet.cluster_down("west")  # down before: what depends on east's proxy cannot be known
    refused = rotate(inventory, "east", "proxy")
    assert refused.outcome is Outcome.REFUSED and not refused.pushed and refused.retryable
    assert "the replication links of west (" in (refused.error or "") and "could not be read" in (refused.error or "")
    fleet.cluster_down("west", down=False)

    def west_goes_down(record: RotationRecord, current: Step) -> None:
        if current.name == "verify" and current.finished_at is not None:
            fleet.cluster_down("west")

    record = rotate(inventory, "east", "proxy", progress=west_goes_down)
    fleet.cluster_down("west", down=False)
    assert record.outcome is Outcome.ROLLED_BACK, record.error
    assert "force update failed" in (record.error or "") and "west.sim.local: peer_unreachable" in (record.error or "")
    assert not step(record, "replication:crdb aa").ok and step(record, "verify-rollback").ok
    assert all(entry["undone"] for entry in record.companions)  # the task changed nothing anywhere
    assert fleet["east"].served_fingerprint(1, "proxy") == record.old_fingerprint
    assert set(links(fleet).values()) == {"in-sync"}


def test_peer_put_refused_is_rolled_back_and_the_record_says_why(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path) -> None:
    fleet: Fleet = linked_fleet(["east", "west"])
    fleet.replica_of("east", "west")
    inventory = load_fleet_inventory(tmp_path, fleet, ca_files)
    fleet["west"].replication.fail_next_db_update(1, 409)

    record = rotate(inventory, "east", "proxy")
    assert record.outcome is Outcome.ROLLED_BACK, record.error
    assert "PUT /v1/bdbs/1 failed with HTTP 409 (db_busy" in (record.error or "")
    assert not step(record, "replication:west/db1").ok
    pinned = fleet["west"].replication.bdb_fields(1)["replica_sources"][0]["server_cert"]
    assert leaf_fingerprint(pinned) == record.old_fingerprint == fleet["east"].served_fingerprint(1, "proxy")
    assert set(links(fleet).values()) == {"in-sync"}

    listed = fleet["east"].replication.bdb_fields(1)["authentication_ssl_client_certs"]
    fleet["east"].replication.fail_next_db_update(1, 409)  # before the push: the source refuses the new syncer
    refused = rotate(inventory, "west", "syncer")
    assert refused.outcome is Outcome.REFUSED and not refused.pushed and refused.retryable
    assert "db_busy" in (refused.error or "") and not step(refused, "prepare:replication").ok
    assert fleet["east"].replication.bdb_fields(1)["authentication_ssl_client_certs"] == listed
    assert set(links(fleet).values()) == {"in-sync"}


def test_a_link_that_never_returns_to_sync_is_undone_in_reverse(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path) -> None:
    fleet: Fleet = linked_fleet(["east", "west"])
    fleet.replica_of("east", "west")
    inventory = load_fleet_inventory(tmp_path, fleet, ca_files)
    fleet["west"].replication.freeze_link(1)  # stalls on any certificate but today's
    clock = FakeClock(datetime.now(UTC))  # the deadline runs out without waiting

    record = rotate(inventory, "east", "proxy", clock=clock)
    assert record.outcome is Outcome.ROLLED_BACK, record.error
    assert "1 link(s) not in sync after 3s" in (record.error or "") and "simulated stall" in (record.error or "")
    names = [s.name for s in record.steps]
    assert names.index("replication:sync") < names.index("rollback") < names.index("verify-rollback") \
        < names.index("undo:replication")
    undo = step(record, "undo:replication")
    assert undo.ok and "pins the previous proxy" in undo.detail and "1 link(s) in sync" in undo.detail
    assert [(e["memo"]["action"], e["undone"]) for e in record.companions] == [("pin", True)]
    pinned = fleet["west"].replication.bdb_fields(1)["replica_sources"][0]["server_cert"]
    assert leaf_fingerprint(pinned) == record.old_fingerprint
    assert set(links(fleet).values()) == {"in-sync"}


def test_without_the_follow_up_the_simulated_link_stays_broken(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path) -> None:
    fleet: Fleet = linked_fleet(["east", "west"])
    fleet.replica_of("east", "west")
    inventory = load_fleet_inventory(tmp_path, fleet, ca_files)

    def open_session(name: str) -> ClusterSession:
        return open_cluster(inventory, name)

    graph = read_graph(inventory, open_session)
    skipping = ReplicationCompanion(graph, graph.impact("east", CertName.PROXY), open_session, follow_up=False)
    record = rotate(inventory, "east", "proxy", companions=(skipping,))
    assert record.outcome is Outcome.VERIFIED, record.error  # the certificate alone is fine...
    (row,) = fleet["west"].replication.check_now([1])
    assert row["status"] == "out-of-sync" and "source certificate not trusted" in row["last_error"]  # ...the link not


def test_a_dependent_outside_the_inventory_is_refused_unless_allowed(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path) -> None:
    fleet: Fleet = linked_fleet(["east", "west"])
    fleet.replica_of("east", "west")
    inventory = load_fleet_inventory(tmp_path, fleet, ca_files, names=["west"])
    outsider = "{}:{}".format(*fleet.endpoint("east")[:2])

    refused = rotate(inventory, "west", "syncer")
    assert refused.outcome is Outcome.REFUSED and not refused.pushed
    assert f"{outsider} (not in the inventory)" in (refused.error or "") and "--allow-unmanaged-peer" in (
        refused.error or "")
    assert set(links(fleet).values()) == {"in-sync"}

    path = str(tmp_path / "fleet.yaml")
    result = runner.invoke(app, ["rotate", "west", "syncer", "--dry-run", "-c", path])
    assert result.exit_code == 2 and "--allow-unmanaged-peer" in result.stdout
    result = runner.invoke(app, ["rotate", "west", "syncer", "--dry-run", "--allow-unmanaged-peer", "-c", path])
    assert result.exit_code == 0, result.output
    assert f"left to the operator (outside the inventory): {outsider}" in result.stdout

    record = rotate(inventory, "west", "syncer", allow_unmanaged_peer=True)
    assert record.outcome is Outcome.VERIFIED, record.error
    assert any(outsider in w and "update it by hand" in w for w in record.warnings)
    assert set(links(fleet).values()) == {"out-of-sync"}  # as the warning says: the operator's to fix


def test_links_check_and_a_dry_run_show_the_coupling(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path) -> None:
    fleet: Fleet = linked_fleet(["east", "west"])
    fleet.replica_of("east", "west")
    guid = fleet.crdb()
    path = fleet_inventory(tmp_path / "fleet.yaml", fleet, ca_files)

    result = runner.invoke(app, ["links", "-c", str(path), "--json"])
    assert result.exit_code == 0, result.output
    rows = {(r["kind"], r["replica"], r["source"]): r for r in json.loads(result.stdout)["links"]}
    assert set(rows) == {("replica_of", "west db1", "east db1"), ("active_active", "west db2", "east db2"),
                         ("active_active", "east db2", "west db2")}
    assert rows["replica_of", "west db1", "east db1"]["depends_on"] == ["east/proxy", "west/syncer"]
    assert rows["active_active", "east db2", "west db2"]["crdb_guid"] == guid
    assert {r["status"] for r in rows.values()} == {"in-sync"}

    result = runner.invoke(app, ["check", "-c", str(path), "--json"])
    coupled = json.loads(result.stdout)["coupled"]
    assert set(coupled) == {f"{n}/{c}" for n in ("east", "west") for c in ("proxy", "syncer", "api")}
    assert "west db1 pins its proxy in replica_sources[0].server_cert" in coupled["east/proxy"]
    assert "east db1 trusts its syncer for west db1 <- east db1" in coupled["west/syncer"]
    assert any(f"CRDB aa ({guid})" in d for d in coupled["west/proxy"])
    result = runner.invoke(app, ["check", "-c", str(path)])
    assert "coupled east/proxy: 2 dependent(s)" in result.stdout

    result = runner.invoke(app, ["rotate", "east", "proxy", "--dry-run", "-c", str(path)])
    assert result.exit_code == 0, result.output
    plan = result.stdout[result.stdout.index("plan:"):]
    assert "after the push: west db1 pins the new proxy in replica_sources[0].server_cert" in plan
    assert f"after the push: CRDB aa ({guid}) force update from east" in plan
    assert fleet["east"].crdbs.force_update_count(guid) == 0 and set(links(fleet).values()) == {"in-sync"}

    fleet.cluster_down("east")
    result = runner.invoke(app, ["links", "-c", str(path), "--json"])
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert "east" in report["unread"]
    (row,) = [r for r in report["links"] if r["kind"] == "replica_of"]
    assert row["status"] == "out-of-sync" and "unreachable" in row["last_error"]
    assert row["source"].endswith("(not in the inventory, or a cluster not read)")


def test_the_demo_rotates_both_certificates_through_the_queue(redis_server: RedisServer, tmp_path: Path) -> None:
    """`make demo-replication`: Redis, a worker, `rotation rotate` queued and followed, the link watched."""
    redis.Redis(port=redis_server.port, db=7).flushdb()
    env = {**os.environ, "ROTATION_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/7",
           "ROTATION_DEMO_DIR": str(tmp_path / "demo"),
           "ROTATION_DEMO_ADDRESSES": f"{free_loopback_base()},{free_loopback_base()}"}
    result = subprocess.run([sys.executable, "scripts/demo_replication.py"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=180)
    out = result.stdout
    assert result.returncode == 0, out[-4000:]
    assert out.count("queued 1 rotation(s)") == 2  # through the queue, both
    assert "west/syncer verified" in out and "east/proxy verified" in out
    syncer = re.search(r"link checked (\d+) times during the rotation: (.*)", out)
    assert syncer and syncer.group(2) == f"{syncer.group(1)} in-sync"  # make before break: never out of sync
    assert "west's old one is gone" in out and "stopped every process the demo started" in out


def test_a_crdb_another_rotation_is_updating_is_waited_for_then_given_up(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path) -> None:
    fleet: Fleet = linked_fleet(["east", "west"])
    guid = fleet.crdb()
    inventory = load_fleet_inventory(tmp_path, fleet, ca_files)
    ctx = ServiceContext(inventory=lambda: inventory)
    clock = FakeClock(datetime.now(UTC))
    with ctx.state.hold(f"crdb:{guid}", "replication", "rotation elsewhere"):  # its turn, for the whole deadline
        (record,) = rotate_here(inventory, "east", ["syncer"], RotationOptions(poll_interval=0.5, clock=clock), ctx)
    assert record.outcome is Outcome.ROLLED_BACK, record.error
    assert "CRDB aa: another rotation is changing it" in (record.error or "") and "rotation elsewhere" in (
        record.error or "")
    assert fleet["east"].crdbs.force_update_count(guid) == 0 and sum(clock.slept) >= 3
    assert set(links(fleet).values()) == {"in-sync"}


def test_the_undo_of_a_force_update_is_another_once_the_old_certificate_is_back(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    fleet: Fleet = linked_fleet(["east", "west"])
    guid = fleet.crdb()
    inventory = load_fleet_inventory(tmp_path, fleet, ca_files)
    fleet["west"].replication.freeze_link(2)  # west's instance stalls on any east certificate but today's
    caplog.set_level(logging.WARNING, "rotation")

    record = rotate(inventory, "east", "proxy", verify_deadline=timedelta(seconds=2))
    assert record.outcome is Outcome.ROLLED_BACK, record.error
    assert "CRDB aa: 1 link(s) not in sync after 2s: west db2 <- east db2 (CRDB aa): syncing" in (record.error or "")
    undo = step(record, "undo:replication")
    assert undo.ok and undo.detail.startswith("again: task") and "2 link(s) in sync" in undo.detail
    assert fleet["east"].crdbs.force_update_count(guid) == 2  # the update, then its undo
    assert [(e["memo"]["action"], e["undone"]) for e in record.companions] == [("force_update", True)]
    warned = [r.getMessage() for r in caplog.records if "force update from east" in r.getMessage()]
    assert len(warned) == 2 and all("dangerous" in message for message in warned)
    assert set(links(fleet).values()) == {"in-sync"}


def test_a_database_password_in_a_replica_of_uri_never_reaches_records_or_links_output(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path) -> None:
    """A Replica Of source URI holds the source database's password (``redis://admin:<password>@host:port``):
    the pin's undo memo, the record's companions and `links --json` showed it in clear."""
    fleet: Fleet = linked_fleet(["east", "west"])
    fleet.replica_of("east", "west")
    addr, port, sni = fleet.endpoint("east")
    uri = f"redis://admin:dbpw-s3cret@{addr}:{port}"
    west = fleet["west"]
    west.replication.configure(1, {"replica_sources": [{
        "uri": uri, "server_cert": fleet["east"].cluster_cert_pem("proxy"), "replication_tls_sni": sni}]})
    path = fleet_inventory(tmp_path / "fleet.yaml", fleet, ca_files)
    assert set(links(fleet).values()) == {"in-sync"}

    result = runner.invoke(app, ["links", "-c", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert "dbpw-s3cret" not in result.stdout
    assert f"{addr}:{port}" in result.stdout  # still says which source

    record = rotate(load_fleet_inventory(tmp_path, fleet, ca_files), "east", "proxy")
    assert record.outcome is Outcome.VERIFIED, record.error
    assert "west db1 pins the new proxy" in step(record, "replication:west/db1").detail
    assert "dbpw-s3cret" not in json.dumps(record.to_dict())
    stored = (state_dir / "history.jsonl").read_text()
    assert record.id in stored and "dbpw-s3cret" not in stored
    assert west.replication.bdb_fields(1)["replica_sources"][0]["uri"] == uri  # RS's entry kept its password
    assert set(links(fleet).values()) == {"in-sync"}
