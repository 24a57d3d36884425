"""The unattended service end to end: real Redis, real Celery worker and beat subprocesses, the simulator."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
import yaml
from support.chat import Receiver
from support.cluster import handshake_fingerprint
from support.processes import RedisServer, wait_for

from rotation.core.errors import RotationInProgress
from rotation.core.model import CertName, Outcome
from rotation.simulator import ClusterSimulator
from rotation.usecases.context import ServiceContext
from rotation.usecases.status import service_status

FQDN = "cluster.test.local"
ALL = {str(c) for c in CertName}


def verified_certs(ctx: ServiceContext) -> dict[str, str]:
    """cert name -> new fingerprint of every verified rotation so far."""
    return {r.cert_name: r.new_fingerprint or "" for r in ctx.state.history("sim", limit=100)
            if r.outcome is Outcome.VERIFIED}


def test_beat_finds_due_certificates_and_workers_rotate_them(
    simulator: ClusterSimulator, service_env: dict[str, str], start_service, redis_server: RedisServer
) -> None:
    start_service("worker", "--concurrency", "4")
    start_service("beat")
    ctx = ServiceContext()
    done = wait_for(lambda: (v := verified_certs(ctx)) and set(v) == ALL and v, 90, 0.5,
                    what="all five certificates rotated by the service")
    # Independent handshakes: every node serves what the service says it installed.
    for address in simulator.node_addresses:
        assert handshake_fingerprint(address, simulator.config.cm_port, FQDN) == done["cm"]
        assert handshake_fingerprint(address, simulator.config.api_port, FQDN) == done["api"]
        assert handshake_fingerprint(address, 12000, f"redis-12000.{FQDN}") == done["proxy"]
    assert all(r.trigger == "beat" for r in ctx.state.history("sim", limit=100))
    # The next scans see healthy certificates and nothing more is queued.
    wait_for(lambda: all(row["health"] == "ok" for row in service_status(ctx)["certificates"])
             and len(service_status(ctx)["certificates"]) == 5, 30, 0.5, what="status ok")
    assert service_status(ctx)["in_flight"] == []

    # No private key in clear anywhere in Redis (records, state, task results, broker) or the logs.
    client = redis_server.client()
    for key in client.keys("*"):
        kind = client.type(key)
        dump = {"string": lambda k: client.get(k), "hash": lambda k: json.dumps(client.hgetall(k)),
                "list": lambda k: json.dumps(client.lrange(k, 0, -1)),
                "zset": lambda k: json.dumps(client.zrange(k, 0, -1))}.get(kind, lambda k: "")(key) or ""
        assert "PRIVATE KEY" not in dump, key
    for log in Path(service_env["ROTATION_STATE_DIR"]).parent.glob("*.log"):
        assert "PRIVATE KEY" not in log.read_text()


def test_two_concurrent_requests_one_runs_one_is_refused(
    simulator: ClusterSimulator, service_env: dict[str, str], start_service
) -> None:
    from workers.queue import CeleryRotationQueue

    start_service("worker")
    queue = CeleryRotationQueue(ServiceContext())
    results: list[str] = []
    barrier = threading.Barrier(2)

    def request() -> None:
        barrier.wait()
        try:
            results.append(queue.submit("sim", "proxy"))
        except RotationInProgress as exc:
            results.append(f"refused: {exc.message}")

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refused = [r for r in results if r.startswith("refused")]
    accepted = [r for r in results if not r.startswith("refused")]
    assert len(refused) == 1 and len(accepted) == 1, results
    assert "already in progress" in refused[0]
    ctx = ServiceContext()
    record = wait_for(lambda: (r := ctx.state.get(accepted[0])) and r.outcome is not Outcome.IN_PROGRESS and r,
                      30, what="the accepted rotation to end")
    assert record.outcome is Outcome.VERIFIED, record.error
    # Once it has ended (the task releases its pending marker just after the record's last save), a new
    # request is accepted again.
    wait_for(lambda: queue.current("sim", "proxy") is None, 30, what="the pending marker's release")
    assert queue.submit("sim", "proxy")


def test_failing_pushes_back_off_visibly_without_a_tight_loop(
    simulator: ClusterSimulator, service_env: dict[str, str], start_service
) -> None:
    simulator.fail_next(10_000, 500)
    worker = start_service("worker")
    start_service("beat", env={**service_env, "ROTATION_SCAN_INTERVAL": "0.5s"})  # three scans take 1.5 s
    ctx = ServiceContext()

    def backing_off() -> dict | None:
        rows = {r["cert"]: r for r in service_status(ctx)["certificates"]}
        row = rows.get("cm")
        return row if row and row["failures"] >= 1 and row["next_attempt"] else None

    row = wait_for(backing_off, 60, 0.5, what="cm to back off")
    assert "500" in (row["last_error"] or "")
    calls_then = len(ctx.state.history("sim", "cm", limit=1000))

    def scans_holding_cm_back() -> int:  # each scan that finds cm backing off (and so queues it not) says so
        return len(re.findall(r"sim: backing off [\w, ]*\bcm\b[\w, ]* after failures", worker.log()))

    held_then = scans_holding_cm_back()
    wait_for(lambda: scans_holding_cm_back() >= held_then + 3, 30, 0.05, what="three more scans holding cm back")
    assert len(ctx.state.history("sim", "cm", limit=1000)) == calls_then  # a backing-off certificate: not again
    # And the CLI shows it.
    from typer.testing import CliRunner

    from workers.main import app

    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0
    cm = next(r for r in json.loads(result.stdout)["certificates"] if r["cert"] == "cm")
    assert cm["failures"] >= 1 and cm["next_attempt"]


def test_redis_restart_during_scans_the_service_recovers(
    simulator: ClusterSimulator, service_env: dict[str, str], start_service, redis_server: RedisServer
) -> None:
    start_service("worker")
    start_service("beat")
    ctx = ServiceContext()
    wait_for(lambda: ctx.state.scans().get("sim", {}).get("last_success"), 30, 0.5, what="a first scan")
    redis_server.restart()  # no persistence: everything in Redis is gone, connections dropped
    wait_for(lambda: _safe_scans(ctx).get("sim", {}).get("last_success"), 60, 0.5,
             what="a scan after the Redis restart")
    # Whatever was rotated before the restart stays rotated; the rest is rotated after it.
    wait_for(lambda: _all_ok(ctx), 90, 0.5, what="every certificate healthy after the restart")
    assert not _safe_status(ctx)["in_flight"]


def _safe_status(ctx: ServiceContext) -> dict:
    import redis

    try:
        return service_status(ctx)
    except (redis.RedisError, Exception):
        return {"certificates": [], "in_flight": ["?"]}


def _all_ok(ctx: ServiceContext) -> bool:
    rows = _safe_status(ctx)["certificates"]
    return len(rows) == 5 and all(r["health"] == "ok" for r in rows)


def _safe_scans(ctx: ServiceContext) -> dict:
    import redis

    try:
        return ctx.state.scans()
    except redis.RedisError:
        return {}


def test_cli_rotate_goes_through_the_queue_and_follows(
    simulator: ClusterSimulator, service_env: dict[str, str], start_service
) -> None:
    from typer.testing import CliRunner

    from workers.main import app

    start_service("worker")
    runner = CliRunner()
    result = runner.invoke(app, ["rotate", "sim", "metrics_exporter", "--json"])
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert record["outcome"] == "verified" and record["trigger"] == "cli"
    result = runner.invoke(app, ["rotate", "sim", "syncer", "--no-wait"])
    assert result.exit_code == 0
    rotation_id = result.stdout.strip()
    ctx = ServiceContext()
    wait_for(lambda: (r := ctx.state.get(rotation_id)) and r.outcome is Outcome.VERIFIED, 30,
             what="the --no-wait rotation")
    result = runner.invoke(app, ["history", "--json"])
    assert {r["cert_name"] for r in json.loads(result.stdout)} >= {"metrics_exporter", "syncer"}


@pytest.mark.parametrize("metrics_flag", ["--metrics-port"])
def test_metrics_expose_expiry_match_outcomes_and_scans(
    simulator: ClusterSimulator, service_env: dict[str, str], start_service, metrics_flag: str
) -> None:
    import httpx
    from support.processes import free_port

    port = free_port()
    start_service("worker", metrics_flag, str(port))
    start_service("beat")
    ctx = ServiceContext()
    wait_for(lambda: set(verified_certs(ctx)) == ALL, 90, 0.5, what="rotations")
    wait_for(lambda: all(r["health"] == "ok" for r in service_status(ctx)["certificates"]), 30, 0.5,
             what="a scan after the rotations")
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert re.search(r'rotation_certificate_expiry_timestamp_seconds\{address="127\.[\d.]+",cert="cm",cluster="sim",'
                     r'endpoint="127\.[\d.]+:8443",node="1"\}', text)
    assert re.search(r'rotation_certificate_fingerprint_match\{address="[^"]+",cert="proxy",cluster="sim"', text)
    assert " 0.0" not in [line[line.rfind(" "):] for line in text.splitlines()
                          if line.startswith("rotation_certificate_fingerprint_match")]
    assert 'rotation_rotations_total{cert="api",cluster="sim",outcome="verified"} 1.0' in text
    assert 'rotation_rotation_duration_seconds_count{outcome="verified"} 5.0' in text
    assert 'rotation_last_successful_scan_timestamp_seconds{cluster="sim"}' in text


def test_nightly_policy_audit_task_records_drift_for_the_metrics(
    simulator: ClusterSimulator, service_env: dict[str, str], start_service
) -> None:
    from prometheus_client import generate_latest

    from rotation.adapters.metrics import registry_for
    from schedules import beat_schedule
    from workers.celery_app import app_for

    assert beat_schedule(ServiceContext().settings)["audit-tls-policies"]["task"] == "rotation.audit_all_policies"
    receiver = Receiver()  # the notification channel
    inventory = yaml.safe_load(Path(service_env["ROTATION_CONFIG"]).read_text())
    inventory["chatops"] = {"notify": {"url_env": "TEST_NOTIFY_URL"}}
    Path(service_env["ROTATION_CONFIG"]).write_text(yaml.safe_dump(inventory))
    simulator.override_node_tls(2, listener="cm", min_version="1.1")  # the API still says 1.2
    start_service("worker", env={**service_env, "TEST_NOTIFY_URL": receiver.base + "/notify"})
    try:
        result = app_for(ServiceContext().settings).send_task("rotation.audit_policy", args=["sim"]).get(timeout=60)
        assert result["drift"] >= 1
        ctx = ServiceContext()
        text = generate_latest(registry_for(ctx.state)).decode()
        line = next(x for x in text.splitlines() if x.startswith('rotation_tls_policy_drift{cluster="sim"}'))
        assert float(line.split()[-1]) >= 1
        assert "1.1" in ctx.state.scans()["sim"]["policy_summary"]
        (posted,) = wait_for(lambda: receiver.texts("/notify"), 10, what="the drift notification")
        assert "TLS policy audit of sim" in posted and "1.1" in posted
    finally:
        receiver.close()


def test_a_rotation_the_broker_does_not_take_does_not_stay_in_progress(
    simulator: ClusterSimulator, service_env: dict[str, str], redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record is saved, then sending the task fails (here the broker refuses the queue's LPUSH): no
    worker will ever end that record, so the submitter must, and the marker is released."""
    from workers.queue import CeleryRotationQueue

    client = redis_server.client()
    client.acl_setuser("nopush", enabled=True, passwords=["+nopush-password"], keys=["*"], channels=["*"],
                       commands=["+@all", "-lpush", "-rpush"])
    try:
        monkeypatch.setenv("ROTATION_REDIS_URL", f"redis://nopush:nopush-password@127.0.0.1:{redis_server.port}/0")
        ctx = ServiceContext()
        queue = CeleryRotationQueue(ctx)
        with pytest.raises(Exception, match="(?i)permission"):
            queue.submit("sim", "cm")
        (record,) = ctx.state.history("sim", "cm")
        assert record.outcome is not Outcome.IN_PROGRESS and record.finished_at is not None, record
        assert "permission" in (record.error or "").lower()
        assert queue.current("sim", "cm") is None
    finally:
        client.acl_deluser("nopush")
    assert not simulator.received_update_bodies


def test_a_queued_rotation_that_meets_another_holder_of_the_lock_is_refused_not_left_running(
    simulator: ClusterSimulator, service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the request (the lock was free) and the worker's start, another rotation of the certificate
    takes the lock (`rotation rotate --inline` elsewhere). The task's record was saved by the request, but
    no earlier delivery of it ever started: it is refused as in progress and ends, instead of retrying
    until Celery gives up and leaving the record `in_progress` and the marker held."""
    import workers.context
    from workers.queue import CeleryRotationQueue
    from workers.tasks import rotate_certificate

    ctx = ServiceContext()
    monkeypatch.setattr(workers.context, "_context", ctx)  # the worker's context: this test's environment
    queue = CeleryRotationQueue(ctx)
    rotation_id = queue.submit("sim", "cm")  # no worker yet: the task waits in the queue
    identity = ctx.inventory().cluster("sim").identity
    with ctx, ctx.state.hold(identity, "cm", "rotation elsewhere (cli)"):  # ctx: its REST clients closed after
        rotate_certificate.apply(kwargs={"cluster": "sim", "cert_name": "cm", "rotation_id": rotation_id})
    record = ctx.state.get(rotation_id)
    assert record is not None and record.outcome is Outcome.REFUSED, record
    assert "already in progress (rotation elsewhere (cli) on " in (record.error or "") and record.blocked_by
    assert queue.current("sim", "cm") is None
    assert not simulator.received_update_bodies
