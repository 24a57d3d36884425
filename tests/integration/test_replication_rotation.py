"""Rotating proxy and syncer of clusters linked by Replica Of and Active-Active (simulated fleet).

Every rotation here runs the one path (``rotate_and_record``), which builds the replication
companion from the coupling graph it reads; link status comes from the simulator's real
syncer handshakes, read back independently (``fleet.check_links``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.fleet import load_fleet_inventory
from support.rotate import rotate_here

from rotation.config import Inventory
from rotation.core.coupling_data import leaf_fingerprint
from rotation.core.model import Outcome, RotationRecord, Step
from rotation.simulator.fleet import Fleet
from rotation.usecases.rotate.run import RotationOptions


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
