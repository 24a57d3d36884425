"""The scan and the fleet's state at their edges, with real Redis, real workers and the simulator: a
certificate failing for weeks keeps backing off; one not valid yet is due; `status` says backing off only
while it does; files not renewed are not pushed again at every scan; one database named twice is rotated
once; an audit that could not look exports no drift; beat's healthcheck takes a Sentinel URL; a scan that
fails ends in one log line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from support.clock import FakeClock
from support.cluster import start_simulator, write_inventory
from support.processes import RedisServer, wait_for

from rotation.config import Inventory, load_inventory
from rotation.core.model import CertName, Outcome
from rotation.core.renewal import Health
from rotation.simulator import ClusterSimulator
from rotation.usecases.check import check_clusters
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate.record import rotate_and_record
from rotation.usecases.rotate.run import RotationOptions
from rotation.usecases.scan import fleet_scan, scan_and_queue, scan_cluster
from rotation.usecases.status import service_status


def test_a_certificate_failing_for_weeks_still_backs_off(simulator: ClusterSimulator,
                                                         service_env: dict[str, str]) -> None:
    """Doubling from 5 minutes, 40 failures are 5m * 2**39: more than a timedelta holds. The backoff stays
    at its cap (6h) instead of the outcome's bookkeeping raising, which left the certificate without a
    backoff (rotated again at every scan) and its rotation unrecorded in the counters."""
    with ServiceContext() as ctx:
        ctx.state.update_state("sim", "cm", failures=60)  # 6-hourly failures for two weeks, a node down
        simulator.node_down(2)
        try:
            rotated = rotate_and_record(ctx, "sim", "cm", RotationOptions(rotation_id="weeks-1", poll_interval=0.05))
        finally:
            simulator.node_down(2, down=False)
        assert rotated.record.outcome is Outcome.REFUSED, rotated.record.error
        state = ctx.state.state("sim", "cm")
        assert state["failures"] == 61 and state["last_outcome"] == "refused"
        wait = datetime.fromisoformat(state["next_attempt"]) - ctx.clock.now()
        assert timedelta(hours=6) * 0.79 <= wait <= timedelta(hours=6) * 1.21


@pytest.fixture
def long_lived(tmp_path: Path, ca_files: tuple[Path, Path], redis_server: RedisServer,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[Inventory]:
    """A simulator whose certificates have 200 days left (nothing due by renew_before), the service's real Redis."""
    from rotation.adapters.secrets import SecretBox

    redis_server.client().flushall()
    for key, value in {"ROTATION_REDIS_URL": redis_server.url, "ROTATION_STORE": "redis",
                       "ROTATION_STATE_DIR": str(tmp_path / "state"),
                       "ROTATION_SECRET_KEY": SecretBox.generate_key()}.items():
        monkeypatch.setenv(key, value)
    sim = start_simulator(tmp_path, expires_in=timedelta(days=200))
    try:
        yield load_inventory(write_inventory(tmp_path / "rotation.yaml", sim, ca_files))
    finally:
        sim.stop()


def test_a_certificate_not_valid_yet_is_due_not_ok(long_lived: Inventory) -> None:
    """Every client refuses a certificate before its notBefore (as the pre-push validation does): `check`
    says so (exit 1, not "all fine") and the scan rotates it, as it does an expired one. The clock is pinned
    two days before the simulator issued its certificates (notBefore: an hour before it started)."""
    inventory = long_lived
    clock = FakeClock(datetime.now(UTC) - timedelta(days=2))
    report = check_clusters(inventory, ["sim"], clock)
    assert not report.errors, report.errors
    for state in report.states:
        assert state.health is Health.DUE, (state.cert_name, state.verdict)
        assert state.verdict.reason.startswith("not valid until "), state.verdict.reason
    assert report.exit_code == 1
    with ServiceContext(inventory=lambda: inventory, clock=clock) as ctx:
        scan = scan_cluster(ctx, "sim")
    assert sorted(map(str, scan.due)) == sorted(map(str, inventory.targets("sim")))


def test_status_says_backing_off_only_while_the_backoff_runs(service_env: dict[str, str]) -> None:
    """A certificate whose next attempt has passed is no longer skipped by the scans (``decide``): `status`
    does not show it backing off (nor the `rotation retry` hint) once that moment is behind."""
    clock = FakeClock(datetime.now(UTC))
    with ServiceContext(clock=clock) as ctx:
        ctx.state.update_state("sim", "cm", failures=2, last_error="HTTP 500",
                               next_attempt=(clock.now() + timedelta(minutes=10)).isoformat())
        ctx.state.save_scan("sim", {"cm": {"health": "due", "reason": "expires in 5d", "last_scan": clock.now()
                                           .isoformat()}})
        (row,) = service_status(ctx)["certificates"]
        assert row["backoff"] and row["backoff"]["reason"] == "HTTP 500"
        clock.advance(11 * 60)
        (row,) = service_status(ctx)["certificates"]
        assert row["backoff"] is None and row["failures"] == 2


def test_a_backoff_that_would_outlast_the_certificate_is_not_shown_as_holding_it(
        service_env: dict[str, str]) -> None:
    """The scans try a certificate whose backoff would end after it expires (``decide``): `status` and the
    metrics said it was backing off (and when it would be tried) while the scans were rotating it."""
    from rotation.adapters.metrics import StateCollector

    clock = FakeClock(datetime.now(UTC))
    with ServiceContext(clock=clock) as ctx:
        ctx.state.update_state("sim", "cm", failures=6, last_error="HTTP 500",
                               next_attempt=(clock.now() + timedelta(hours=6)).isoformat())
        ctx.state.save_scan("sim", {"cm": {
            "health": "due", "reason": "expires in 2h", "last_scan": clock.now().isoformat(),
            "not_after": {"cm@node1 127.0.0.1:8443": (clock.now() + timedelta(hours=2)).isoformat()}}})
        (row,) = service_status(ctx)["certificates"]
        assert row["backoff"] is None and row["failures"] == 6, row
        families = {f.name: f for f in StateCollector(ctx.state, clock).collect()}
        assert families["rotation_certificate_next_attempt_timestamp_seconds"].samples == []


class Queued:
    """The scan's queue, recording what it would queue (the rotations then run here, one after the other)."""

    def __init__(self) -> None:
        self.queued: list[str] = []

    def submit(self, cluster: str, cert_name: str, **options: object) -> str:
        self.queued.append(cert_name)
        return f"queued-{cert_name}"

    def current(self, cluster: str, cert_name: str) -> str | None:
        return None


def _files_issuer(inventory_path: Path, ca_files: tuple[Path, Path], tmp_path: Path, validity: timedelta) -> Inventory:
    """`cm` from a `files` issuer whose files hold a certificate of ``validity`` (issued now)."""
    from rotation.adapters.issuers.internal_ca import InternalCA

    data = yaml.safe_load(inventory_path.read_text())
    data["clusters"]["sim"]["certificates"] = {"cm": {"issuer": "pki"}}
    data["issuers"]["pki"] = {"type": "files", "cert_file": str(tmp_path / "pki.pem"),
                              "key_file": str(tmp_path / "pki-key.pem"), "ca_bundle": str(ca_files[0])}
    plan = load_inventory(inventory_path).plan("sim", "cm")
    issued = InternalCA("pki", *ca_files, validity=validity).issue(plan.request())
    (tmp_path / "pki.pem").write_text(issued.leaf_pem + issued.chain_pem)
    (tmp_path / "pki-key.pem").write_text(issued.key_pem)
    inventory_path.write_text(yaml.safe_dump(data))
    return load_inventory(inventory_path)


def test_files_that_were_not_renewed_are_not_pushed_again_at_every_scan(
        simulator: ClusterSimulator, service_env: dict[str, str], inventory_path: Path,
        ca_files: tuple[Path, Path], tmp_path: Path) -> None:
    """A `files` issuer hands out what another PKI process renews. Its certificate, 10 days left with
    renew_before 30d, is pushed once; while the files hold that same certificate, the scans still find it due,
    and each rotation pushed the identical pair again (a cluster-wide certificate update every scan,
    "verified", so never backing off). Nothing newer to push is refused before the push (it backs off and
    says why)."""
    inventory = _files_issuer(inventory_path, ca_files, tmp_path, timedelta(days=40))
    clock = FakeClock(datetime.now(UTC))

    with ServiceContext(inventory=lambda: inventory, clock=clock) as ctx:
        first = rotate_and_record(ctx, "sim", "cm", RotationOptions(rotation_id="files-1", poll_interval=0.05))
        assert first.record.outcome is Outcome.VERIFIED, first.record.error
        clock.advance(timedelta(days=30).total_seconds())
        queue = Queued()
        scan_and_queue(ctx, "sim", queue)  # type: ignore[arg-type]
        assert queue.queued == ["cm"]  # 10 days left: due, whatever the issuer holds
        puts = simulator.rest_requests("/v1/cluster/update_cert", "PUT") + \
            simulator.rest_requests("/v1/cluster/certificates", "PUT")
        again = rotate_and_record(ctx, "sim", "cm", RotationOptions(rotation_id="files-2", poll_interval=0.05))
        assert simulator.rest_requests("/v1/cluster/update_cert", "PUT") + \
            simulator.rest_requests("/v1/cluster/certificates", "PUT") == puts
        assert again.record.outcome is Outcome.REFUSED, again.record.outcome
        assert "already serve" in (again.record.error or ""), again.record.error
        assert ctx.state.state("sim", "cm")["next_attempt"]  # backs off: the next scans skip it
        queue = Queued()
        scan_and_queue(ctx, "sim", queue)  # type: ignore[arg-type]
        assert queue.queued == []


def test_a_renewal_due_as_soon_as_installed_is_not_rotated_at_every_scan(
        simulator: ClusterSimulator, service_env: dict[str, str], inventory_path: Path,
        ca_files: tuple[Path, Path], tmp_path: Path) -> None:
    """The CA now issues shorter certificates than renew_before (10 days, renew_before 30d): the one a rotation
    just installed was due again at once, and each scan rotated it again. It is renewed with a third of its life
    left instead, and `status` says why (what `check` says too: the same verdict)."""
    inventory = _files_issuer(inventory_path, ca_files, tmp_path, timedelta(days=10))
    clock = FakeClock(datetime.now(UTC))
    with ServiceContext(inventory=lambda: inventory, clock=clock) as ctx:
        first = rotate_and_record(ctx, "sim", "cm", RotationOptions(rotation_id="short-1", poll_interval=0.05))
        assert first.record.outcome is Outcome.VERIFIED, first.record.error
        queue = Queued()
        result = scan_cluster(ctx, "sim")
        scan_and_queue(ctx, "sim", queue)  # type: ignore[arg-type]
        assert queue.queued == [], result.decisions[CertName.CM].reason
        assert "not shorter than its lifetime" in result.decisions[CertName.CM].reason
        (row,) = [r for r in service_status(ctx)["certificates"] if r["cert"] == "cm"]
        assert "not shorter than its lifetime" in row["reason"], row
        assert "renewed with a third of it left" in row["reason"], row  # what the scan does, not only the verdict
        clock.advance(timedelta(days=7).total_seconds())  # a third of its life left
        scan_and_queue(ctx, "sim", queue)  # type: ignore[arg-type]
        assert queue.queued == ["cm"]


def test_a_policy_audit_that_could_not_look_does_not_export_zero_drift(
        simulator: ClusterSimulator, service_env: dict[str, str]) -> None:
    """The nightly audit found drift; the next night the cluster's REST API does not answer, so nothing is
    audited. ``rotation_tls_policy_drift`` then said 0 (no drift) for that cluster: an alert on it resolved
    though nobody had looked. Unknown is no sample (the audit's errors stay in `status`)."""
    from prometheus_client import generate_latest

    from rotation.adapters.metrics import registry_for
    from rotation.usecases.tls_audit import audit_policy

    def drift_lines(ctx: ServiceContext) -> list[str]:
        return [line for line in generate_latest(registry_for(ctx.state)).decode().splitlines()
                if line.startswith('rotation_tls_policy_drift{cluster="sim"}')]

    simulator.override_node_tls(2, listener="cm", min_version="1.1")  # the API still says 1.2
    with ServiceContext() as ctx:
        assert audit_policy(ctx, "sim").drift
        (line,) = drift_lines(ctx)
        assert float(line.split()[-1]) >= 1
        simulator.fail_requests(10_000, 503)
        report = audit_policy(ctx, "sim")
        assert report.errors and not report.drift
        assert drift_lines(ctx) == []


def test_the_beat_healthcheck_reaches_redis_through_its_sentinels(tmp_path: Path) -> None:
    """beat's container healthcheck (`healthcheck.py redis`) reads ROTATION_REDIS_URL, which the README allows
    to be ``redis+sentinel://``: it answered "unhealthy: ValueError" for a deployment whose master answers."""
    import subprocess
    import sys

    from support.sentinel import SentinelSet

    root = Path(__file__).resolve().parents[2]
    deployment = SentinelSet(tmp_path / "sentinel").start()
    try:
        check = subprocess.run([sys.executable, str(root / "deploy" / "healthcheck.py"), "redis"],
                               capture_output=True, text=True, timeout=60, cwd=root,
                               env={**os.environ, "PYTHONPATH": str(root), "ROTATION_REDIS_URL": deployment.url})
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.strip() == "redis answers PING"
    finally:
        deployment.stop()


def test_a_cluster_that_stays_unreachable_ends_its_scan_with_one_line_not_a_traceback(
        simulator: ClusterSimulator, service_env: dict[str, str], start_service) -> None:
    """A scan that cannot reach its cluster is retried (5, 10, 20 s); after the last retry it ended by raising
    the error out of the task, so the worker logged a traceback for an ordinary outage, scan after scan. The
    task is sent as its last retry (Celery's ``retries``): the 35 s of countdowns before it are not waited."""
    from rotation.core import retry
    from workers.celery_app import app_for

    worker = start_service("worker")
    simulator.stop()
    ctx = ServiceContext()
    app_for(ctx.settings).send_task("rotation.scan_cluster", args=["sim"], retries=retry.SCAN_RETRIES)
    wait_for(lambda: "scan of sim failed" in worker.log() or "raised unexpected" in worker.log(), 120, 0.5,
             what="the scan's last retry")
    assert "scan of sim failed" in worker.log()
    assert "Traceback" not in worker.log() and "raised unexpected" not in worker.log()
    assert ctx.state.scans()["sim"]["last_error"]


def test_one_database_named_twice_is_queued_once(tmp_path: Path, ca_files: tuple[Path, Path],
                                                  service_env: dict[str, str]) -> None:
    """``databases: {db1: {}, "1": {}}``: its name and its uid, one certificate (one lock: ``db:db1``). The
    scan found both due and queued two rotations of it, the second (after the first, with the jitter) issuing
    and pushing yet another certificate."""
    sim = start_simulator(tmp_path, version="8.0.2-17")
    try:
        inventory = load_inventory(write_inventory(tmp_path / "inv.yaml", sim, ca_files,
                                                   cluster_overrides={"databases": {"db1": {}, "1": {}}}))
        with ServiceContext(inventory=lambda: inventory) as ctx:
            queue = Queued()
            result = scan_and_queue(ctx, "sim", queue)  # type: ignore[arg-type]
        queued = [name for name in queue.queued if name.startswith("db:")]
        assert len(queued) == 1, queued
        assert result["queued"]
    finally:
        sim.stop()


def test_a_scan_that_cannot_use_its_inventory_is_one_error_line_not_a_traceback(
        simulator: ClusterSimulator, service_env: dict[str, str], inventory_path: Path, tmp_path: Path,
        start_service) -> None:
    """A worker holds no cluster password (its file is missing: a warning at load, an error when used). Each
    scan of that cluster raised the ConfigError out of the task: a traceback in the worker's log every scan
    interval, where the error names the file and the field in one line."""
    from workers.celery_app import app_for

    data = yaml.safe_load(inventory_path.read_text())
    data["clusters"]["sim"]["password_file"] = str(tmp_path / "missing-password")
    inventory_path.write_text(yaml.safe_dump(data))
    worker = start_service("worker")
    ctx = ServiceContext()
    app_for(ctx.settings).send_task("rotation.scan_cluster", args=["sim"])
    wait_for(lambda: "scan of sim failed" in worker.log() or "raised unexpected" in worker.log(), 60, 0.5,
             what="the scan")
    assert "scan of sim failed" in worker.log() and "missing-password" in worker.log()
    assert "Traceback" not in worker.log() and "raised unexpected" not in worker.log()
    assert "missing-password" in ctx.state.scans()["sim"]["last_error"]


def test_an_acme_profile_shorter_than_renew_before_is_refused_at_load(inventory_path: Path) -> None:
    """Let's Encrypt's ``shortlived`` profile issues 160-hour certificates (sheet rs-8x-and-public-cas-2026.md
    §1.5): with the default renew_before (30d) each one is due as soon as it is served, so every scan ordered
    and pushed another (LE's rate limits then fail it). Refused as an internal CA's ``validity`` is."""
    from rotation.core.errors import ConfigError

    data = yaml.safe_load(inventory_path.read_text())
    data["issuers"]["le"] = {"type": "acme", "directory": "https://acme.example.com/directory", "challenge": "http-01",
                             "profile": "shortlived"}
    data["clusters"]["sim"]["certificates"]["proxy"] = {"issuer": "le", "hosts": ["proxy.cluster.test.local"]}
    inventory_path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as refused:
        load_inventory(inventory_path)
    assert "issuers.le.profile" in refused.value.message and "renew_before 30d" in refused.value.message
    data["clusters"]["sim"]["certificates"]["proxy"]["renew_before"] = "50%"  # renewed at half its life: fine
    inventory_path.write_text(yaml.safe_dump(data))
    load_inventory(inventory_path)


def test_a_cluster_removed_from_the_inventory_leaves_status_and_the_metrics_at_the_next_scan(
        simulator: ClusterSimulator, service_env: dict[str, str]) -> None:
    """A cluster taken out of the inventory kept its certificates' state and its scans for good: `status`
    and every metric (expiry, failures, last scan) went on describing a cluster nobody manages any more,
    and its expiry alerts fired for ever. The next fleet scan forgets the clusters the inventory no longer has."""
    from prometheus_client import generate_latest

    from rotation.adapters.metrics import registry_for

    with ServiceContext() as ctx:
        ctx.state.save_scan("gone", {"cm": {"health": "expiring", "not_after": {"cm@node1 127.0.0.9:8443":
                                                                              "2026-01-02T00:00:00+00:00"}}})
        ctx.state.update_state("gone", "api", failures=3)
        assert {c["cluster"] for c in service_status(ctx)["certificates"]} == {"gone"}
        assert fleet_scan(ctx) == ["sim"]
        scan_cluster(ctx, "sim")
        status = service_status(ctx)
        assert {c["cluster"] for c in status["certificates"]} == {"sim"} and set(status["scans"]) == {"sim"}
        text = generate_latest(registry_for(ctx.state)).decode()
        assert 'cluster="sim"' in text and 'cluster="gone"' not in text


def test_a_certificate_rotated_while_the_scan_read_the_cluster_is_not_queued_again(
        simulator: ClusterSimulator, service_env: dict[str, str]) -> None:
    """A scan reads the cluster (cm due), a rotation of cm queued earlier ends verified, its claim goes; the
    scan then queued cm again, from what the cluster served before: a second rotation (another CA order) of
    a certificate renewed a moment ago (seen in a busy run of the Sentinel failover test: syncer twice). A
    rotation that ended before the read is no reason to wait: what the scan read is after it."""
    from rotation.core.model import RotationRecord, Trigger

    clock = FakeClock(datetime.now(UTC) + timedelta(days=3650))  # everything the simulator serves is due
    with ServiceContext(clock=clock) as ctx:
        def verified(rotation_id: str, cert_name: str, finished: timedelta) -> RotationRecord:
            return RotationRecord(id=rotation_id, cluster="sim", cert_name=cert_name, trigger=Trigger.BEAT,
                                  started_at=clock.now() - timedelta(seconds=5), finished_at=clock.now() + finished,
                                  outcome=Outcome.VERIFIED)

        ctx.state.save(verified("during-read", "cm", timedelta(seconds=1)))  # ended after the scan's read began
        ctx.state.save(verified("before-read", "api", -timedelta(seconds=1)))
        queue = Queued()
        result = scan_and_queue(ctx, "sim", queue, uniform=lambda low, high: 0.0)  # type: ignore[arg-type]
    assert "cm" not in queue.queued and result["rotated_meanwhile"] == ["cm"]
    assert {"api", "proxy", "metrics_exporter"} <= set(queue.queued), queue.queued
