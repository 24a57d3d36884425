"""The peer changes of a coupled rotation against a lost turn and a lost record (real Redis, simulated fleet).

A pause is injected where it matters (between a peer's read and its write, or between a peer write and
its note in the record) by wrapping the session call at that point; the lease's lapse is a lock key
deleted by hand in Redis, never a sleep.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from support.certs import make_cert
from support.clock import FakeClock
from support.fleet import load_fleet_inventory
from support.processes import ROOT, RedisServer
from support.rotate import rotate_here

from rotation.adapters.cluster import ClusterSession
from rotation.adapters.secrets import SecretBox
from rotation.config import Inventory
from rotation.core.coupling_data import leaf_fingerprint
from rotation.core.errors import Interrupted, StoreUnavailable
from rotation.core.model import Outcome, RotationRecord, Step
from rotation.simulator.fleet import Fleet
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate import interrupts
from rotation.usecases.rotate.run import RotationOptions


@pytest.fixture
def redis_env(own_redis: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    monkeypatch.setenv("ROTATION_STORE", "redis")
    monkeypatch.setenv("ROTATION_REDIS_URL", own_redis.url)
    monkeypatch.setenv("ROTATION_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ROTATION_SECRET_KEY", SecretBox.generate_key())
    yield own_redis


def _client_cert_pem(cn: str) -> str:
    cert, _ = make_cert(cn=cn, hosts=(cn,))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_a_peer_write_after_its_turn_lapsed_to_another_rotation_is_not_made(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path], redis_env: RedisServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """West's syncer rotation reads east db1's trusted list under its turn, then pauses past the turn's lease
    (its own lock is untouched: nobody wanted it). Another rotation takes the turn and adds its syncer to the
    same list. West must not write its stale list back over that change."""
    fleet: Fleet = linked_fleet(["east", "west"])
    fleet.replica_of("east", "west")
    inventory = load_fleet_inventory(tmp_path, fleet, ca_files)
    redis = redis_env.client()
    other = _client_cert_pem("other-replica.sim.local")
    real_read = ClusterSession.database
    paused: list[str] = []

    def read_then_pause(session: ClusterSession, uid: int) -> dict[str, Any]:
        raw = real_read(session, uid)
        turns = [str(k) for k in redis.keys("rotation:lock:bdb:*")]
        if session.name == "east" and turns and not paused:
            (turn,) = turns
            paused.append(turn)
            redis.delete(turn)  # the paused rotation's turn lapses ...
            elsewhere = ServiceContext(inventory=lambda: inventory)
            name = turn.removeprefix("rotation:lock:").removesuffix(":replication")
            with elsewhere.state.hold(name, "replication", "rotation elsewhere"), \
                    elsewhere.sessions.open(inventory, "east") as east:  # ... another takes it and writes
                listed = [e["client_cert"] for e in east.database(1)["authentication_ssl_client_certs"]]
                east.update_database(1, {"authentication_ssl_client_certs":
                                         [{"client_cert": pem} for pem in [*listed, other]]})
            elsewhere.sessions.close()
        return raw

    monkeypatch.setattr(ClusterSession, "database", read_then_pause)
    ctx = ServiceContext(inventory=lambda: inventory)
    (record,) = rotate_here(inventory, "west", ["syncer"], RotationOptions(poll_interval=0.05, push_backoff=0.05),
                            ctx)
    monkeypatch.setattr(ClusterSession, "database", real_read)
    assert paused, "the turn was never taken"
    listed = fleet["east"].replication.bdb_fields(1)["authentication_ssl_client_certs"]
    assert leaf_fingerprint(other) in {leaf_fingerprint(e["client_cert"]) for e in listed}, (
        record.outcome, record.error)
    assert record.outcome is Outcome.REFUSED and not record.pushed, (record.outcome, record.error)
    assert "turn" in (record.error or "")


def test_a_peer_write_whose_note_the_store_never_got_is_undone_by_the_redelivered_task(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path], redis_env: RedisServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis goes away just as west db1 takes east's new proxy (the pin applied, its note not yet saved). The
    worker ends its rotation verified, but only in its own journal, and its task's ack is lost. The task is
    redelivered to another worker (its own journal): it rolls the certificate back, so it must also undo the
    pin, or west would trust only a proxy east no longer serves."""
    fleet: Fleet = linked_fleet(["east", "west"])
    fleet.replica_of("east", "west")
    inventory = load_fleet_inventory(tmp_path, fleet, ca_files)
    real_update = ClusterSession.update_database
    went_away: list[str] = []

    def update_then_redis_goes_away(session: ClusterSession, uid: int, fields: dict[str, Any]) -> dict[str, Any]:
        answer = real_update(session, uid, fields)
        if session.name == "west" and not went_away:
            went_away.append(session.name)
            redis_env.client().save()  # what Redis holds now survives its restart (as with persistence)
            redis_env.stop()
        return answer

    monkeypatch.setattr(ClusterSession, "update_database", update_then_redis_goes_away)
    first = ServiceContext(inventory=lambda: inventory)
    try:
        (record,) = rotate_here(inventory, "east", ["proxy"], RotationOptions(poll_interval=0.05, push_backoff=0.05),
                                first)
    finally:
        redis_env.start()
        monkeypatch.setattr(ClusterSession, "update_database", real_update)
    assert went_away and record.outcome is Outcome.VERIFIED, (record.outcome, record.error)

    redis = redis_env.client()
    for lock in redis.keys("rotation:lock:*"):  # the first worker's leases lapse (it is done)
        redis.delete(lock)
    monkeypatch.setenv("ROTATION_STATE_DIR", str(tmp_path / "another-worker"))
    second = ServiceContext(inventory=lambda: inventory)
    (again,) = rotate_here(inventory, "east", ["proxy"],
                           RotationOptions(rotation_id=record.id, poll_interval=0.05, push_backoff=0.05), second)
    served = fleet["east"].served_fingerprint(1, "proxy")
    pinned = fleet["west"].replication.bdb_fields(1)["replica_sources"][0]["server_cert"]
    assert leaf_fingerprint(pinned) == served, (again.outcome, again.error, again.companions)
    (row,) = fleet["west"].replication.check_now([1])
    assert row["status"] == "in-sync", row
    assert again.outcome is Outcome.ROLLED_BACK, again.error
    assert [(e["memo"]["action"], e["undone"]) for e in again.companions] == [("pin", True)]


def test_a_peer_change_that_could_not_be_undone_before_the_push_ends_failed_not_refused(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path], redis_env: RedisServer) -> None:
    """Redis goes away once east db1 trusts west's new syncer (prepare), before the original pair is kept: nothing
    is pushed, and the undo cannot take its turn. East still trusts a certificate nobody serves: the record must
    say ``failed`` (as an undo that fails does), not ``refused`` (nothing changed)."""
    fleet: Fleet = linked_fleet(["east", "west"])
    fleet.replica_of("east", "west")
    inventory = load_fleet_inventory(tmp_path, fleet, ca_files)
    before = fleet["east"].replication.bdb_fields(1)["authentication_ssl_client_certs"]

    def redis_goes_away_after_prepare(record: RotationRecord, step: Step) -> None:
        if step.name == "prepare:replication" and step.finished_at is not None:
            redis_env.client().save()
            redis_env.stop()

    ctx = ServiceContext(inventory=lambda: inventory)
    try:
        with pytest.raises(StoreUnavailable):
            rotate_here(inventory, "west", ["syncer"],
                        RotationOptions(poll_interval=0.05, progress=redis_goes_away_after_prepare), ctx)
    finally:
        redis_env.start()
    (record,) = ctx.state.history("west", "syncer")
    after = fleet["east"].replication.bdb_fields(1)["authentication_ssl_client_certs"]
    assert not record.pushed and after != before  # the new syncer is still trusted
    assert [(e["memo"]["action"], e["undone"]) for e in record.companions] == [("trust", False)]
    assert record.outcome is Outcome.FAILED, (record.outcome, record.error)


class SigtermWhileWaiting(FakeClock):
    """SIGTERM to this process at the first sleep once ``armed``; counts the sleeps from then on."""

    def __init__(self) -> None:
        super().__init__(datetime.now(UTC))
        self.armed, self.after = False, -1

    def sleep(self, seconds: float) -> None:
        if self.armed and self.after < 0:
            self.after = 0
            os.kill(os.getpid(), signal.SIGTERM)  # noted by sigterm_unwinds' handler, raised at a safe point
        elif self.after >= 0:
            self.after += 1
        super().sleep(seconds)


def test_sigterm_while_waiting_for_a_crdb_turn_unwinds_at_once(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path) -> None:
    """Another rotation holds the CRDB's turn; a SIGTERM while this one waits for it must unwind at the wait's
    next look (roll back, undo, record), not only once the whole deadline ran out."""
    assert threading.current_thread() is threading.main_thread()  # else sigterm_unwinds does nothing
    fleet: Fleet = linked_fleet(["east", "west"])
    guid = fleet.crdb()
    inventory = load_fleet_inventory(tmp_path, fleet, ca_files, verify_deadline="60s")
    clock = SigtermWhileWaiting()
    at_rollback: list[int] = []

    def watch(record: RotationRecord, current: Step) -> None:
        if current.name == "replication:crdb aa" and current.finished_at is None:
            clock.armed = True
        if current.name == "rollback" and current.finished_at is None:
            at_rollback.append(clock.after)

    ctx = ServiceContext(inventory=lambda: inventory)
    with ctx.state.hold(f"crdb:{guid}", "replication", "rotation elsewhere"), interrupts.sigterm_unwinds(), \
            pytest.raises(Interrupted):
        rotate_here(inventory, "east", ["syncer"], RotationOptions(poll_interval=0.5, clock=clock, progress=watch),
                    ctx)
    (record,) = ctx.state.history("east", "syncer")
    assert record.outcome is Outcome.ROLLED_BACK, record.error
    assert at_rollback and at_rollback[0] <= 1, at_rollback  # not the 120 looks of the whole deadline
    assert fleet["east"].crdbs.force_update_count(guid) == 0


DIES_AT = """
import os, sys
from rotation.config import load_inventory
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate.record import rotate_and_record
from rotation.usecases.rotate.run import RotationOptions

inventory = load_inventory(sys.argv[1])

def dies(record, step):
    if step.name == sys.argv[2] and step.finished_at is None:
        print(record.id, flush=True)
        os._exit(9)  # the worker dies (SIGKILL, OOM): no finally runs

rotate_and_record(ServiceContext(inventory=lambda: inventory), sys.argv[3], sys.argv[4],
                  RotationOptions(poll_interval=0.05, push_backoff=0.05, progress=dies))
"""


def _dies_at(tmp_path: Path, step: str, cluster: str, cert: str) -> subprocess.CompletedProcess[str]:
    """A rotation of CLUSTER's CERT in a process of its own, killed (SIGKILL) at STEP (see DIES_AT)."""
    dying = subprocess.run([sys.executable, "-c", DIES_AT, str(tmp_path / "fleet.yaml"), step, cluster, cert],
                           cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=120)
    assert dying.returncode == 9, dying.stderr[-3000:]
    return dying


def _abandoned_east_proxy(linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path]
                          ) -> tuple[Fleet, Inventory, str]:
    """East replicates to west; a rotation of east's proxy dies once west pins its new proxy (never resumed).
    Returns the fleet, its inventory and the proxy east served before."""
    fleet: Fleet = linked_fleet(["east", "west"])
    fleet.replica_of("east", "west")
    inventory = load_fleet_inventory(tmp_path, fleet, ca_files)
    original = fleet["east"].served_fingerprint(1, "proxy")
    _dies_at(tmp_path, "replication:sync", "east", "proxy")
    return fleet, inventory, original


def test_a_worker_dying_between_the_rollback_and_the_undo_leaves_the_undo_to_the_redelivered_task(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path) -> None:
    """East's proxy is rolled back (west's link never took the new one), then the worker dies as the pin's
    undo begins. Its record says rolled_back but never ended, with the pin not undone: the redelivered task
    must undo it, or west keeps pinning a proxy east no longer serves."""
    fleet: Fleet = linked_fleet(["east", "west"])
    fleet.replica_of("east", "west")
    inventory = load_fleet_inventory(tmp_path, fleet, ca_files)
    fleet["west"].replication.freeze_link(1)  # stalls on any certificate but today's
    dying = _dies_at(tmp_path, "undo:replication", "east", "proxy")
    rotation_id = dying.stdout.strip()
    east, west = fleet["east"], fleet["west"]
    assert leaf_fingerprint(west.replication.bdb_fields(1)["replica_sources"][0]["server_cert"]) != \
        east.served_fingerprint(1, "proxy")  # broken until the pin is undone

    (record,) = rotate_here(inventory, "east", ["proxy"], RotationOptions(rotation_id=rotation_id, poll_interval=0.05))
    pinned = west.replication.bdb_fields(1)["replica_sources"][0]["server_cert"]
    assert leaf_fingerprint(pinned) == east.served_fingerprint(1, "proxy"), (record.outcome, record.error)
    assert record.outcome is Outcome.ROLLED_BACK and record.finished_at is not None, record.error
    assert [(e["memo"]["action"], e["undone"]) for e in record.companions] == [("pin", True)]
    (row,) = west.replication.check_now([1])
    assert row["status"] == "in-sync", row


def test_a_rotation_taking_over_an_abandoned_one_also_undoes_its_peer_changes(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path) -> None:
    """A (a CLI, never resumed) dies once west db1 pins its new proxy. B, the next rotation of east's proxy,
    adopts A's original: B's failure restores that original, so it must also undo A's pin, not only its own
    (which puts back A's proxy, which east then no longer serves)."""
    fleet, inventory, original = _abandoned_east_proxy(linked_fleet, tmp_path, ca_files)
    east, west = fleet["east"], fleet["west"]
    assert east.served_fingerprint(1, "proxy") != original  # A's proxy, pinned by west

    west.replication.fail_next_db_update(1, 409)  # B's pin is refused: B rolls back to A's original
    (record,) = rotate_here(inventory, "east", ["proxy"], RotationOptions(poll_interval=0.05, push_backoff=0.05))
    assert record.outcome is Outcome.ROLLED_BACK and record.old_fingerprint == original, record.error
    assert east.served_fingerprint(1, "proxy") == original
    pinned = west.replication.bdb_fields(1)["replica_sources"][0]["server_cert"]
    assert leaf_fingerprint(pinned) == original, (record.error, record.companions)
    (row,) = west.replication.check_now([1])
    assert row["status"] == "in-sync", row


def test_peer_changes_of_an_abandoned_rotation_survive_a_takeover_refused_before_its_push(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path) -> None:
    """A dies once west pins its proxy; B adopts A's original but is refused before its push (west unreadable),
    which ends A's record; C adopts the same original and rolls back to it: C must still undo A's pin."""
    fleet, inventory, original = _abandoned_east_proxy(linked_fleet, tmp_path, ca_files)
    east, west = fleet["east"], fleet["west"]

    fleet.cluster_down("west")
    (b,) = rotate_here(inventory, "east", ["proxy"], RotationOptions(poll_interval=0.05, push_backoff=0.05))
    fleet.cluster_down("west", down=False)
    assert b.outcome is Outcome.REFUSED and not b.pushed, b.error

    west.replication.fail_next_db_update(1, 409)  # C's pin is refused: C rolls back to A's original
    (c,) = rotate_here(inventory, "east", ["proxy"], RotationOptions(poll_interval=0.05, push_backoff=0.05))
    assert c.outcome is Outcome.ROLLED_BACK and c.old_fingerprint == original, c.error
    pinned = west.replication.bdb_fields(1)["replica_sources"][0]["server_cert"]
    assert leaf_fingerprint(pinned) == original == east.served_fingerprint(1, "proxy"), (c.error, c.companions)
    (row,) = west.replication.check_now([1])
    assert row["status"] == "in-sync", row


def test_a_takeover_refused_before_its_push_leaves_the_abandoned_rotations_peer_changes(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path) -> None:
    """A dies after pushing west's new syncer, which east trusts besides the old one. B adopts A's original, and
    its own change to east's list is refused before its push: B undoes its own changes, not A's (A's syncer is
    still served: east must keep trusting it)."""
    fleet: Fleet = linked_fleet(["east", "west"])
    fleet.replica_of("east", "west")
    inventory = load_fleet_inventory(tmp_path, fleet, ca_files)
    east, west = fleet["east"], fleet["west"]
    _dies_at(tmp_path, "replication:sync", "west", "syncer")
    served = west.served_fingerprint(1, "syncer")

    east.replication.fail_next_db_update(1, 409)  # B's new syncer is refused by east: B ends before its push
    (b,) = rotate_here(inventory, "west", ["syncer"], RotationOptions(poll_interval=0.05, push_backoff=0.05))
    assert b.outcome is Outcome.REFUSED and not b.pushed, b.error
    assert west.served_fingerprint(1, "syncer") == served
    listed = east.replication.bdb_fields(1)["authentication_ssl_client_certs"]
    assert served in {leaf_fingerprint(e["client_cert"]) for e in listed}, (b.error, b.companions)
    (row,) = west.replication.check_now([1])
    assert row["status"] == "in-sync", row
