"""One rotation per certificate of one REAL cluster, whatever URL the inventory reaches it by.

Locks were keyed by the text of ``url`` (``host:port``): the same cluster listed under two names (one inventory
or two), once by one node's address and once by another's (or by its FQDN and an address), gave two identities,
two locks, and two rotations of one certificate pushing on one cluster at once.

Deterministic interleaving, real Redis (the service's lock), the simulator: the first rotation is held at its push
(its progress hook, as in test_proxy_database_locks.py), the second runs to its end there.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from support.cluster import write_inventory
from support.processes import RedisServer
from support.rotate import rotate_here

from rotation.config import Inventory, load_inventory
from rotation.core.model import Outcome, RotationRecord, Step
from rotation.simulator import ClusterSimulator
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate.run import RotationOptions


@pytest.fixture
def inventory(sim: ClusterSimulator, ca_files: tuple[Path, Path], tmp_path: Path,
              redis_store: RedisServer) -> Inventory:  # the service's lock: a lease in Redis
    """``sim`` by node 1's address, ``alias`` (the same cluster) by node 2's."""
    path = write_inventory(tmp_path / "inv.yaml", sim, ca_files)
    data = yaml.safe_load(path.read_text())
    alias = dict(data["clusters"]["sim"], url=f"https://{sim.node_addresses[1]}:{sim.config.api_port}")
    data["clusters"]["alias"] = alias
    path.write_text(yaml.safe_dump(data))
    loaded = load_inventory(path)
    assert loaded.cluster("sim").identity != loaded.cluster("alias").identity  # two URLs, one cluster
    return loaded


def rotate(inventory: Inventory, cluster: str, name: str, progress: object = None) -> RotationRecord:
    options = RotationOptions(poll_interval=0.05, push_backoff=0.05, verify_deadline=timedelta(seconds=5),
                              progress=progress)  # type: ignore[arg-type]
    (record,) = rotate_here(inventory, cluster, [name], options)
    return record


def _during_the_push(inventory: Inventory, outer_cert: str, inner_cert: str) -> tuple[RotationRecord, RotationRecord]:
    """``outer_cert`` rotated through "sim", and ``inner_cert`` through "alias" (another node's address of the same
    cluster) while the first one pushes: both records."""
    inner: list[RotationRecord] = []

    def progress(record: RotationRecord, step: Step) -> None:
        if step.name == "push" and step.finished_at is None and not inner:
            inner.append(rotate(inventory, "alias", inner_cert))

    outer = rotate(inventory, "sim", outer_cert, progress)
    (second,) = inner
    return outer, second


def test_the_same_cluster_by_another_nodes_address_is_one_lock(sim: ClusterSimulator, inventory: Inventory) -> None:
    outer, second = _during_the_push(inventory, "cm", "cm")
    assert outer.outcome is Outcome.VERIFIED, outer.error
    assert second.outcome is Outcome.REFUSED and second.blocked_by, (second.outcome, second.error)
    assert not second.pushed
    assert len(sim.received_update_bodies) == 1  # one push on the cluster, not two


def test_another_certificate_of_the_same_cluster_by_another_address_still_runs(inventory: Inventory) -> None:
    """The lock is per certificate: the cluster's identity from what it says must not widen it."""
    outer, second = _during_the_push(inventory, "cm", "metrics_exporter")
    assert outer.outcome is Outcome.VERIFIED, outer.error
    assert second.outcome is Outcome.VERIFIED, second.error



def test_an_inline_rotation_with_the_local_store_honours_the_services_lock(
        sim: ClusterSimulator, inventory: Inventory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers rotate with Redis; an operator on that host runs `rotate --inline` with ROTATION_STORE=local
    (files, another lock domain) while ROTATION_REDIS_URL still names the service's Redis: both pushed at once."""
    inner: list[RotationRecord] = []

    def progress(record: RotationRecord, step: Step) -> None:
        if step.name == "push" and step.finished_at is None and not inner:
            with monkeypatch.context() as env:
                env.setenv("ROTATION_STORE", "local")
                env.setenv("ROTATION_STATE_DIR", str(tmp_path / "operator"))
                inner.append(rotate(inventory, "sim", "cm"))

    outer = rotate(inventory, "sim", "cm", progress)
    (second,) = inner
    assert outer.outcome is Outcome.VERIFIED, outer.error
    assert second.outcome is Outcome.REFUSED and second.blocked_by, (second.outcome, second.error)
    assert len(sim.received_update_bodies) == 1


def test_a_queued_rotation_that_cannot_read_the_clusters_name_pushes_nothing(
        sim: ClusterSimulator, inventory: Inventory) -> None:
    """A queued rotation's record is saved before it runs (no step yet): it is no resumed one, so when the cluster's
    name cannot be read it must not go on under its URL's lock alone, where a rotation by another URL would not
    see it."""
    with ServiceContext(inventory=lambda: inventory) as ctx:
        queued = RotationRecord(id="queued-1", cluster="sim", cert_name="cm", trigger="beat",
                                started_at=ctx.clock.now())
        ctx.state.save(queued)
    sim.fail_requests(1, 503, method="GET", path="/v1/cluster")  # the first read of the cluster, once
    options = RotationOptions(poll_interval=0.05, push_backoff=0.05, verify_deadline=timedelta(seconds=5),
                              rotation_id="queued-1")
    (record,) = rotate_here(inventory, "sim", ["cm"], options)
    assert record.outcome is Outcome.REFUSED and "503" in (record.error or ""), (record.outcome, record.error)
    assert not sim.received_update_bodies
