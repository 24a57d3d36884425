"""The cluster's ``proxy`` and a database's own certificate (``db:<name>``) share endpoints: a database
without a certificate of its own presents proxy, and a database's rollback that DELETEs its own falls
back to whatever proxy is current. Two such rotations of one cluster, interleaved (beat queues both,
chat and the CLI at once), must still keep the promise: every endpoint serves one certificate per
record, and the records name what each endpoint serves.

Deterministic interleaving, real Redis (the service's lock), the simulator: the first rotation is
held at a step (its progress hook, as in test_fault_matrix.py), the second runs to its end there,
then the first goes on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from support.cluster import handshake_fingerprint, write_inventory
from support.processes import RedisServer
from support.rest import FQDN, Rest
from support.rotate import rotate_here

from rotation.config import Inventory, load_inventory
from rotation.core import certs
from rotation.core.errors import RotationInProgress
from rotation.core.model import ClusterState, Outcome, RotationRecord, Step
from rotation.simulator import ClusterSimulator
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate.record import rotate_and_record
from rotation.usecases.rotate.run import RotationOptions
from rotation.usecases.scan import scan_cluster
from rotation.usecases.status import service_status
from workers.queue import CeleryRotationQueue

# default databases: db1 = TLS on every node (12000), db2 = TLS on node 1 only (12001), plain (12002)


@pytest.fixture
def inventory(sim: ClusterSimulator, ca_files: tuple[Path, Path], tmp_path: Path,
              redis_store: RedisServer) -> Inventory:  # the service's lock: a lease in Redis
    return load_inventory(write_inventory(tmp_path / "inv.yaml", sim, ca_files,
                                          cluster_overrides={"databases": {"db1": {}}}))


def rotate(inventory: Inventory, name: str, progress: Callable[[RotationRecord, Step], None] | None = None,
           deadline: float = 5) -> RotationRecord:
    options = RotationOptions(poll_interval=0.05, push_backoff=0.05, verify_deadline=timedelta(seconds=deadline),
                              progress=progress)
    (record,) = rotate_here(inventory, "sim", [name], options)
    return record


def fingerprint(pem: str) -> str:
    return certs.fingerprint(certs.load_certificates(pem, where="test")[0])


def what_is_served(sim: ClusterSimulator) -> dict[str, str]:
    """Independent view, endpoint -> fingerprint: fresh handshakes on db1 (12000, every node) and db2
    (12001, node 1), and the cluster's two REST copies (db1's own, else proxy)."""
    view = {f"{address}:12000": handshake_fingerprint(address, 12000, f"redis-12000.{FQDN}")
            for address in sim.node_addresses}
    first = sim.node_addresses[0]
    view[f"{first}:12001"] = handshake_fingerprint(first, 12001, f"redis-12001.{FQDN}")
    proxy = fingerprint(sim.cluster_cert_pem("proxy"))
    view["GET /v1/cluster/certificates"] = proxy
    own = Rest(sim)("GET", "/v1/bdbs/1/certificates")
    view["GET /v1/bdbs/1/certificates"] = fingerprint(own.json()["cert"]) if own.status_code == 200 else proxy
    return view


def endpoint_of(label: str) -> str:
    """A record's node label (``proxy@node1 127.0.0.2:12000``, ``db:db1@cluster GET /v1/...``) -> the endpoint."""
    return label.split(" ", 1)[1]


def assert_promise_kept(sim: ClusterSimulator, records: list[RotationRecord]) -> None:
    """Each record that pushed ends with one certificate on every endpoint it names (new: verified, old: rolled
    back), and, read in the order they ended, the records name what each endpoint serves now."""
    named: dict[str, str | None] = {}
    for record in sorted(records, key=lambda r: r.finished_at or r.started_at):
        if not record.pushed:
            assert record.outcome is Outcome.REFUSED, (record.cert_name, record.outcome, record.error)
            continue
        expected = record.new_fingerprint if record.outcome is Outcome.VERIFIED else record.old_fingerprint
        assert record.outcome in (Outcome.VERIFIED, Outcome.ROLLED_BACK), (record.cert_name, record.error)
        assert record.cluster_state in (ClusterState.NEW, ClusterState.OLD), (record.cert_name, record.error)
        assert {pair["after"] for pair in record.nodes.values()} == {expected}, (record.cert_name, record.nodes)
        named.update({endpoint_of(label): pair["after"] for label, pair in record.nodes.items()})
    served = what_is_served(sim)
    assert {endpoint: served[endpoint] for endpoint in named} == named


def hold_at(step_name: str, finished: bool, action: Callable[[], RotationRecord]) -> tuple[
        Callable[[RotationRecord, Step], None], list[RotationRecord]]:
    """A progress hook that runs ``action`` (the other rotation, to its end) once, when the step is reached."""
    done: list[RotationRecord] = []

    def progress(record: RotationRecord, step: Step) -> None:
        if step.name == step_name and (step.finished_at is not None) == finished and not done:
            done.append(action())

    return progress, done


def test_a_database_rotation_while_proxy_is_pushed_keeps_both_records_true(sim: ClusterSimulator,
                                                                           inventory: Inventory) -> None:
    """db1 presents proxy; a proxy rotation read its endpoints among proxy's. A `db:db1` rotation that ran
    meanwhile gave db1 a certificate of its own: the proxy rotation then waited for its new certificate on
    db1's endpoints, failed, and its rollback could not verify either (db1 serves its own): `failed`,
    mixed, with a certificate the proxy record never pushed on the endpoints it names."""
    progress, inner = hold_at("push", False, lambda: rotate(inventory, "db:db1"))
    proxy = rotate(inventory, "proxy", progress, deadline=1)
    (database,) = inner
    assert_promise_kept(sim, [proxy, database])
    assert proxy.outcome is Outcome.VERIFIED, proxy.error
    assert database.outcome is Outcome.REFUSED and database.blocked_by, database.error
    assert not database.pushed


def test_a_proxy_rotation_during_a_database_rollback_keeps_the_rollback_exact(sim: ClusterSimulator,
                                                                             inventory: Inventory) -> None:
    """db1 presented proxy P0; its rotation fails verification and rolls back by DELETE, which falls back to
    the proxy current *then*. A proxy rotation that ended meanwhile (P0 -> P1) left the rollback waiting for
    P0 on db1: it could not verify, and db1 ends on P1, not on what it served before."""
    before = what_is_served(sim)

    def proxy_then() -> RotationRecord:
        sim.clear_faults()  # the database's rollback may read its REST copy again
        with ServiceContext(inventory=lambda: inventory) as ctx:  # what an operator and beat see meanwhile
            scan_cluster(ctx, "sim")
            rows = {row["cert"]: row for row in service_status(ctx)["certificates"]}
            assert "of db:db1" in (rows["proxy"]["in_flight"] or ""), rows["proxy"]
            with pytest.raises(RotationInProgress, match="of db:db1"):
                CeleryRotationQueue(ctx).submit("sim", "proxy")  # refused at once, nothing queued
        return rotate(inventory, "proxy")

    held, inner = hold_at("rollback", False, proxy_then)

    def progress(record: RotationRecord, step: Step) -> None:
        if step.name == "push" and step.finished_at is not None:  # its verification fails: no REST copy
            sim.fail_requests(10_000, 503, method="GET", path="/v1/bdbs/1/certificates")
        held(record, step)

    database = rotate(inventory, "db:db1", progress, deadline=1)
    (proxy,) = inner
    assert_promise_kept(sim, [database, proxy])
    assert database.outcome is Outcome.ROLLED_BACK, database.error
    assert proxy.outcome is Outcome.REFUSED and proxy.blocked_by, proxy.error
    assert what_is_served(sim) == before  # db1 presents the proxy it presented before, which stayed P0


def test_a_database_rotation_that_lost_the_proxy_lock_pushes_nothing(sim: ClusterSimulator,
                                                                     inventory: Inventory,
                                                                     redis_server: RedisServer) -> None:
    """The proxy lock a database rotation holds fences its pushes like its own: paused past its lease while a
    proxy rotation took the lock, it must not post (the two would again share db1's endpoints)."""
    identity = inventory.cluster("sim").identity
    held = contextlib.ExitStack()

    def progress(record: RotationRecord, step: Step) -> None:
        if step.name == "push" and step.finished_at is None:  # right before the POST: the lease ran out ...
            redis_server.client().delete(f"rotation:lock:{identity}:proxy")
            ctx = held.enter_context(ServiceContext(inventory=lambda: inventory))
            held.enter_context(ctx.state.hold(identity, "proxy", "proxy rotation"))  # ... and proxy's took it

    with held:
        database = rotate(inventory, "db:db1", progress)
    assert database.outcome is Outcome.SUPERSEDED and "lost its lock lease" in (database.error or ""), database.error
    assert sim.database_certs.requests == [("POST", 1, True)]  # RS's dry run only: nothing posted


def test_a_queued_rotation_refused_by_a_sibling_certificate_is_retried_a_duplicate_is_not(
        sim: ClusterSimulator, inventory: Inventory) -> None:
    """Beat queues `proxy` and the databases' certificates of one cluster within its jitter: the one that meets
    another certificate's rotation on the shared lock is retried by the task layer, not left to the next scan
    an hour later. A second rotation of the same certificate is still refused, not retried."""
    options = RotationOptions(poll_interval=0.05, push_backoff=0.05, verify_deadline=timedelta(seconds=5))
    seen: dict[str, tuple[Outcome, str | None, float]] = {}

    def queued(name: str) -> RotationRecord:
        with ServiceContext(inventory=lambda: inventory) as ctx:
            rotated = rotate_and_record(ctx, "sim", name, options, retries=0)  # as the Celery task calls it
        seen[name] = (rotated.record.outcome, rotated.retry_id, rotated.retry_in)
        return rotated.record

    progress, _ = hold_at("push", False, lambda: queued("proxy"))
    database = rotate(inventory, "db:db1", progress)
    progress, _ = hold_at("push", False, lambda: queued("db:db1"))
    rotate(inventory, "db:db1", progress)

    assert database.outcome is Outcome.VERIFIED, database.error
    outcome, retry_id, retry_in = seen["proxy"]
    assert outcome is Outcome.REFUSED and retry_id is not None and retry_in > 0
    outcome, retry_id, _ = seen["db:db1"]
    assert outcome is Outcome.REFUSED and retry_id is None
