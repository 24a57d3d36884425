"""The REST fault sweep: every REST request a clean rotation makes, failed in turn, each way RS (or what
stands before it) fails a request, and the end state checked by independent handshakes.

For one rotation of each kind (a cluster slot read on its listeners, ``cm``; ``proxy`` with TLS databases
and its companions' reads; a database's own certificate, starting from the cluster's proxy or from one of
its own, with RS's dry run and a rollback's DELETE or POST), the N-th REST request (N = 1 .. what a clean
rotation makes) answers 503, 409 (to a certificate change: applied on the first node only), a 500 page that
is no JSON, nothing (the request done, the connection dropped), or nothing until the client gave up. Then:
every endpoint serves one certificate (the new one if verified, else the original) and the record says so
endpoint by endpoint, the record ended, the lock is free, and the next rotation works.
Two faults: a push failing for good (every attempt applied, never answered) and the N-th request of the
rollback failing too; a push failing for good each way and the rollback's first push failing the same way.
One simulator per kind of cluster for the whole module (faults cleared between cases), and its state dir."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from support.cluster import handshake_fingerprint, start_simulator, write_inventory
from support.fleet import load_fleet_inventory
from support.rotate import rotate_here

from rotation.adapters.issuers.internal_ca import init_ca
from rotation.config import Inventory, load_inventory
from rotation.core import certs
from rotation.core.coupling_data import leaf_fingerprint
from rotation.core.model import ClusterState, Outcome, RotationRecord, Step
from rotation.simulator import ClusterSimulator
from rotation.simulator.fleet import Fleet
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate.run import RotationOptions

KINDS = ("503", "409", "500-html", "reset", "hang")
REQUEST_TIMEOUT = 0.6  # the request_timeout of the inventory a hang meets (it outlasts it); others wait 10 s
HANG = 1.0
DB_VERSION = "8.0.2-17"  # per-database certificates

# The sweep's cases: a certificate, and for a database what it presents when the rotation starts (the cluster's
# proxy: a rollback DELETEs; a certificate of its own: a rollback POSTs it back)
CASES = {"cm": ("cm", None), "proxy": ("proxy", None), "db-own": ("db:db1", "own"), "db-proxy": ("db:db1", "proxy")}
_DB_READ = ["GET /v1/cluster", "GET /v1/nodes", "GET /v1/bdbs/certificates?page=1&page_size=1000", "GET /v1/bdbs"]
# REST requests of a clean rotation, and of a clean rollback (from its step on), per case:
# test_the_sweep_covers_every_request_of_a_clean_rotation pins them. The first GET /v1/cluster is the cluster's
# name, read before the lock when the view was not read yet (proxy's companions read it): the lock is held under it
# too (pipeline._identities), and the read step reuses that answer
_NAME = ["GET /v1/cluster"]
CLEAN = {
    "cm": [*_NAME, "GET /v1/nodes", "GET /v1/bdbs", "GET /v1/cluster/certificates",
           "PUT /v1/cluster/certificates", "GET /v1/cluster/certificates"],
    "proxy": ["GET /v1/cluster", "GET /v1/nodes", "GET /v1/bdbs", "GET /v1/crdbs", "GET /v1/ocsp",
              "GET /v1/cluster/certificates", "PUT /v1/cluster/certificates", "GET /v1/cluster/certificates"],
    "db-own": [*_NAME, *_DB_READ, *_DB_READ[1:], "GET /v1/bdbs/1/certificates",
               "POST /v1/bdbs/1/certificates?dry_run=true", "POST /v1/bdbs/1/certificates",
               "GET /v1/bdbs/1/certificates", "GET /v1/bdbs/1/certificates"],
    "db-proxy": [*_NAME, *_DB_READ, *_DB_READ[1:], "GET /v1/bdbs/1/certificates", "GET /v1/cluster",
                 "POST /v1/bdbs/1/certificates?dry_run=true", "POST /v1/bdbs/1/certificates",
                 "GET /v1/bdbs/1/certificates", "GET /v1/bdbs/1/certificates"],
}
ROLLBACK = {
    "cm": ["PUT /v1/cluster/certificates", "GET /v1/cluster/certificates"],
    "proxy": ["PUT /v1/cluster/certificates", "GET /v1/cluster/certificates"],
    "db-own": ["POST /v1/bdbs/1/certificates", "GET /v1/bdbs/1/certificates"],
    "db-proxy": ["DELETE /v1/bdbs/1/certificates", "GET /v1/bdbs/1/certificates", "GET /v1/cluster"],
}
PUSHES = {"cm": "PUT /v1/cluster/certificates", "proxy": "PUT /v1/cluster/certificates",
          "db-own": "POST /v1/bdbs/1/certificates", "db-proxy": "POST /v1/bdbs/1/certificates"}


@dataclass
class Cluster:
    sim: ClusterSimulator
    inventory: Inventory
    quick: Inventory  # the same cluster with a short request_timeout: what a hang meets
    state: Path  # the service's state, kept with the cluster: a database's pairs stay known from case to case


def _cluster(base: Path, **overrides: object) -> Cluster:
    sim = start_simulator(base, **overrides)
    ca = init_ca(base / "ca", common_name="sweep CA")
    inventories = [load_inventory(write_inventory(
        base / f"rotation-{timeout}.yaml", sim, ca, cluster_overrides={
            "request_timeout": timeout, "verify_deadline": "3s", "handshake_timeout": "2s", "databases": {"db1": {}}}))
        for timeout in ("10s", f"{REQUEST_TIMEOUT}s")]
    return Cluster(sim, *inventories, base / "state")


@pytest.fixture(scope="module")
def slots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """``cm`` and ``proxy`` (the bulk PUT; databases 1 and 2 TLS, on 12000 and 12001)."""
    cluster = _cluster(tmp_path_factory.mktemp("sweep-slots"))
    yield cluster
    cluster.sim.stop()


@pytest.fixture(scope="module")
def with_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """``db:db1``, its own certificate on 12000 (RS 8.0.2)."""
    cluster = _cluster(tmp_path_factory.mktemp("sweep-db"), version=DB_VERSION)
    yield cluster
    cluster.sim.stop()


@pytest.fixture
def cluster(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    cert, start = CASES[request.node.callspec.params["case"]]
    found: Cluster = request.getfixturevalue("with_db" if cert.startswith("db:") else "slots")
    monkeypatch.setenv("ROTATION_STATE_DIR", str(found.state))
    monkeypatch.setenv("ROTATION_STORE", "local")
    found.sim.clear_faults()
    if start is not None:
        _start_from(found, start)
    yield found
    found.sim.clear_faults()


def _start_from(cluster: Cluster, start: str) -> None:
    """Database 1 presents the cluster's proxy certificate, or one of its own the tool installed."""
    own = cluster.sim._call(lambda: cluster.sim.state.bdb_certs.installed.get(1)) is not None
    if start == "proxy" and own:
        with ServiceContext(inventory=lambda: cluster.inventory) as ctx, \
                ctx.sessions.open(cluster.inventory, "sim") as session:
            session.client.delete_database_certificate(1)
    elif start == "own" and not own:
        assert rotate(cluster, "db:db1").outcome is Outcome.VERIFIED


# --- independent view of the cluster --------------------------------------------------------
def served(sim: ClusterSimulator, cert: str) -> dict[str, str]:
    """label -> fingerprint of every endpoint presenting ``cert`` (fresh handshakes) and of the cluster's copy."""
    fqdn, cfg = sim.config.fqdn, sim.config
    view: dict[str, str] = {}
    own = sim._call(lambda: sim.state.bdb_certs.installed.get(1))  # db1's own certificate, if it has one
    for uid, address in enumerate(sim.node_addresses, start=1):
        if cert == "cm":
            view[f"cm@node{uid} {address}:{cfg.cm_port}"] = handshake_fingerprint(address, cfg.cm_port, fqdn)
        ports = {"proxy": [12000] * (own is None) + [12001] * (uid == 1), "db:db1": [12000]}.get(cert, [])
        for port in ports:
            view[f"{cert}@node{uid} {address}:{port}"] = handshake_fingerprint(address, port, f"redis-{port}.{fqdn}")
    if cert == "db:db1":
        pem = own.chain_pem if own else sim.cluster_cert_pem("proxy")
        label = "db:db1@cluster GET /v1/bdbs/1/certificates"
    else:
        label, pem = f"{cert}@cluster GET /v1/cluster/certificates", sim.cluster_cert_pem(cert)
    view[label] = certs.fingerprint(certs.load_certificates(pem, where="simulator")[0])
    return view


def assert_settled(cluster: Cluster, ctx: ServiceContext, record: RotationRecord, original: str) -> None:
    """The promise: one certificate everywhere (new if verified, else the original), named endpoint by endpoint;
    the record ended and saved so; the lock free."""
    sim, cert = cluster.sim, record.cert_name
    assert record.outcome is not Outcome.IN_PROGRESS and record.finished_at is not None, record
    stored = ctx.state.get(record.id)
    assert stored is not None and stored.to_dict() == record.to_dict()
    settings = cluster.inventory.clusters["sim"]
    assert ctx.state.lock_holders([(settings.identity, cert)]) == {}
    view = served(sim, cert)
    expected = record.new_fingerprint if record.outcome is Outcome.VERIFIED else original
    assert set(view.values()) == {expected}, (record.outcome, record.error, view)
    if record.pushed:
        assert {label: pair.get("after") for label, pair in record.nodes.items()} == view, (record.error, record.nodes)
        assert record.cluster_state is (ClusterState.NEW if record.outcome is Outcome.VERIFIED else ClusterState.OLD)


def rotate(cluster: Cluster, cert: str, during: dict[str, tuple[int, str]] | None = None,
           hang: bool = False) -> RotationRecord:
    """One rotation; ``during``: step name -> (n, fault kind): the n-th REST request from that step's start on
    meets the fault (the request log starts there too). ``hang``: with the short request timeout."""
    def progress(record: RotationRecord, step: Step) -> None:
        fault = (during or {}).get(step.name)
        if fault is not None and step.finished_at is None:
            cluster.sim.log_requests()
            cluster.sim.fail_nth(fault[0], fault[1], hang_seconds=HANG)

    options = RotationOptions(poll_interval=0.05, push_backoff=0.01, progress=progress,
                              verify_deadline=timedelta(seconds=3))
    inventory = cluster.quick if hang else cluster.inventory
    (record,) = rotate_here(inventory, "sim", [cert], options, ctx=ServiceContext(inventory=lambda: inventory))
    return record


def then_the_next_rotation_works(cluster: Cluster, ctx: ServiceContext, cert: str, before: RotationRecord) -> None:
    """The next rotation of the certificate (faults cleared) starts from what ``before`` left, and verifies."""
    cluster.sim.clear_faults()
    following = rotate(cluster, cert)
    assert following.outcome is Outcome.VERIFIED, following.error
    left = before.new_fingerprint if before.outcome is Outcome.VERIFIED else before.old_fingerprint
    assert following.old_fingerprint == left or before.old_fingerprint is None
    assert_settled(cluster, ctx, following, following.old_fingerprint or "")


def _current(cluster: Cluster, cert: str) -> str:
    view = set(served(cluster.sim, cert).values())
    assert len(view) == 1, view  # the case before this one left one certificate
    return view.pop()


def _push_failing_for_good(cluster: Cluster, case: str) -> None:
    """Every attempt (retry.PUSH_ATTEMPTS) of the push is applied but never answered: the rotation rolls back
    a certificate every endpoint serves."""
    push = CLEAN[case].index(PUSHES[case]) + 1
    for attempt in range(3):
        cluster.sim.fail_nth(push + attempt, "reset")


def _first_change(listed: list[str]) -> int:
    """The first request (1-based) that is no read: RS's dry run or the push."""
    return next(n for n, line in enumerate(listed, start=1) if not line.startswith("GET "))


def _sweep(requests: dict[str, list[str]], first: dict[str, int]) -> list[tuple[str, str, int]]:
    """(case, kind, n) for every request n of every case from ``first[case]`` on, every kind; a hang only from the
    first change on (a read before it ends as a reset does: refused, nothing changed; only slower)."""
    return [(case, kind, n) for case, listed in requests.items() for kind in KINDS
            for n in range(first.get(case, 1), len(listed) + 1) if kind != "hang" or n >= _first_change(listed)]


# db-proxy reads the cluster as db-own does: its sweep starts where they differ (its own certificate or not)
SWEEP = _sweep(CLEAN, {"db-proxy": CLEAN["db-proxy"].index("GET /v1/bdbs/1/certificates") + 1})


@pytest.mark.parametrize(("case", "kind", "n"), SWEEP, ids=[f"{c}-{k}-{n}" for c, k, n in SWEEP])
def test_the_nth_request_failing_leaves_one_certificate_named(cluster: Cluster, case: str, kind: str,
                                                              n: int) -> None:
    cert = CASES[case][0]
    original = _current(cluster, cert)
    ctx = ServiceContext(inventory=lambda: cluster.inventory)
    cluster.sim.log_requests()
    cluster.sim.fail_nth(n, kind, hang_seconds=HANG)
    record = rotate(cluster, cert, hang=kind == "hang")
    assert len(cluster.sim.logged_requests()) >= n  # the fault met its request
    assert record.old_fingerprint in (None, original), record.error
    if record.outcome is Outcome.REFUSED and n < _first_change(CLEAN[case]):
        # a read failed: known before the issuer is asked (an ACME order, its rate limits), so none is issued
        assert "issue" not in [s.name for s in record.steps], record.error
    assert_settled(cluster, ctx, record, original)
    then_the_next_rotation_works(cluster, ctx, cert, record)


ROLLBACK_SWEEP = _sweep(ROLLBACK, {})


@pytest.mark.parametrize(("case", "kind", "n"), ROLLBACK_SWEEP, ids=[f"{c}-{k}-{n}" for c, k, n in ROLLBACK_SWEEP])
def test_the_nth_request_of_a_rollback_failing_still_restores_the_original(cluster: Cluster, case: str, kind: str,
                                                                           n: int) -> None:
    """Two faults: the push fails for good (applied, never answered) and the n-th request of the rollback fails
    too (its push: RS may have applied it, or only on one node)."""
    cert = CASES[case][0]
    original = _current(cluster, cert)
    ctx = ServiceContext(inventory=lambda: cluster.inventory)
    _push_failing_for_good(cluster, case)
    record = rotate(cluster, cert, during={"rollback": (n, kind)}, hang=kind == "hang")
    assert len(cluster.sim.logged_requests()) >= n  # the fault met its request
    assert record.outcome is Outcome.ROLLED_BACK, record.error
    assert_settled(cluster, ctx, record, original)
    then_the_next_rotation_works(cluster, ctx, cert, record)


FOR_GOOD = [(case, kind) for case in CASES for kind in KINDS]


@pytest.mark.parametrize(("case", "kind"), FOR_GOOD, ids=[f"{c}-{k}" for c, k in FOR_GOOD])
def test_a_push_failing_for_good_and_the_rollbacks_push_once_still_rolls_back(cluster: Cluster, case: str,
                                                                              kind: str) -> None:
    """Every attempt of the push fails (RS may have applied it: reset, hang, 409), and so does the rollback's
    first push: the rollback tries again and every endpoint serves the original."""
    cert = CASES[case][0]
    original = _current(cluster, cert)
    ctx = ServiceContext(inventory=lambda: cluster.inventory)
    push = CLEAN[case].index(PUSHES[case]) + 1
    for attempt in range(3):  # retry.PUSH_ATTEMPTS
        cluster.sim.fail_nth(push + attempt, kind, hang_seconds=HANG)
    record = rotate(cluster, cert, during={"rollback": (1, kind)}, hang=kind == "hang")
    assert record.outcome is Outcome.ROLLED_BACK, record.error
    assert_settled(cluster, ctx, record, original)
    then_the_next_rotation_works(cluster, ctx, cert, record)


@pytest.mark.parametrize("case", list(CASES))
def test_the_sweep_covers_every_request_of_a_clean_rotation(cluster: Cluster, case: str) -> None:
    """The sweeps' n runs over these requests: a pipeline that makes more (or others) must widen them."""
    cert = CASES[case][0]
    cluster.sim.log_requests()
    record = rotate(cluster, cert)
    assert record.outcome is Outcome.VERIFIED, record.error
    assert cluster.sim.logged_requests() == CLEAN[case]
    _start_from(cluster, CASES[case][1] or "")
    _push_failing_for_good(cluster, case)
    record = rotate(cluster, cert, during={"rollback": (1_000, "503")})  # logged from the rollback on
    assert record.outcome is Outcome.ROLLED_BACK, record.error
    assert cluster.sim.logged_requests() == ROLLBACK[case]


@pytest.mark.parametrize("case", ["db-own"])
def test_a_database_certificate_rotates_after_several_rollbacks_in_a_row(cluster: Cluster, case: str) -> None:
    """RS never returns a database's key: the pair it serves is known only from what the tool kept. Failed
    rotations (each push failing for good, rolled back) must not push that pair out of what is kept, or the
    database can never be rotated again."""
    ctx = ServiceContext(inventory=lambda: cluster.inventory)
    original = _current(cluster, "db:db1")
    for _ in range(4):
        _push_failing_for_good(cluster, case)
        failed = rotate(cluster, "db:db1")
        assert failed.outcome is Outcome.ROLLED_BACK, failed.error
        assert_settled(cluster, ctx, failed, original)
    then_the_next_rotation_works(cluster, ctx, "db:db1", failed)


def test_an_old_syncer_a_rest_fault_left_trusted_is_dropped_by_the_next_rotation(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path) -> None:
    """West's syncer rotates; east's REST API fails the read that would drop the old syncer from east's trusted
    client certificates (finalize: a warning). The next rotation of west's syncer must leave east trusting the
    new syncer alone, not the first one for good."""
    fleet: Fleet = linked_fleet(["east", "west"])
    fleet.replica_of("east", "west")
    inventory = load_fleet_inventory(tmp_path, fleet, ca_files)

    def trusted() -> list[str]:
        return [leaf_fingerprint(entry["client_cert"])
                for entry in fleet["east"].replication.bdb_fields(1)["authentication_ssl_client_certs"]]

    def east_fails_the_finalize(record: RotationRecord, step: Step) -> None:
        if step.name == "finalize:replication" and step.finished_at is None:
            fleet["east"].fail_nth(1, "503")

    options = RotationOptions(poll_interval=0.05, push_backoff=0.01, progress=east_fails_the_finalize)
    (first,) = rotate_here(inventory, "west", ["syncer"], options)
    assert first.outcome is Outcome.VERIFIED and first.warnings, first.error
    assert trusted() == [first.old_fingerprint, first.new_fingerprint]  # the warning's leftover
    (second,) = rotate_here(inventory, "west", ["syncer"], RotationOptions(poll_interval=0.05, push_backoff=0.01))
    assert second.outcome is Outcome.VERIFIED, second.error
    assert trusted() == [second.new_fingerprint]
    assert {row["status"] for rows in fleet.check_links().values() for row in rows} == {"in-sync"}
