"""`rotation policy apply` against rotations and interrupts: it holds the locks of the certificates whose
listeners it changes, a rotation that meets them tries again shortly, and every exit after the change
says whether the cluster may have changed."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clock import FakeClock
from support.cluster import start_simulator, write_inventory
from support.rotate import rotate_here
from typer.testing import CliRunner

from rotation.cli.main import app
from rotation.config import Inventory, load_inventory
from rotation.core.model import Outcome
from rotation.simulator import ClusterSimulator, Database
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate.run import RotationOptions
from rotation.usecases.tls_apply import apply_policies, apply_policy

runner = CliRunner()
POLICY_APPLY_OWNER = "policy apply of tls_policy"  # what the apply names itself in the locks (core/targets.py)
DATA_POLICY = {"data_cipher_list": "ECDHE-ECDSA-AES256-GCM-SHA384"}


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ClusterSimulator]:
    simulator = start_simulator(tmp_path, nodes=2, databases=[Database(1, "db1", 12000, True, "all-nodes")],
                                version="7.22.2-14")
    yield simulator
    simulator.stop()


def _inventory(tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path], policy: dict) -> Inventory:
    return load_inventory(write_inventory(tmp_path / "inv.yaml", sim, ca_files,
                                          cluster_overrides={"tls_policy": policy}))


@pytest.mark.parametrize("store", ["local", "redis"])
def test_apply_is_refused_while_a_rotation_holds_a_certificate_it_changes(
    tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path], state_dir: Path,
    request: pytest.FixtureRequest, store: str
) -> None:
    if store == "redis":
        request.getfixturevalue("redis_store")  # the service's store: the locks every worker takes
    inventory = _inventory(tmp_path, sim, ca_files, DATA_POLICY)
    with ServiceContext(inventory=lambda: inventory) as ctx, \
            ctx.state.hold(inventory.cluster("sim").identity, "proxy", "rotation r-1 (cli)"):
        result = runner.invoke(app, ["policy", "apply", "sim", "-c", str(tmp_path / "inv.yaml"), "--json"])
    (report,) = json.loads(result.stdout)["clusters"]
    assert result.exit_code == 2 and report["status"] == "refused", report
    assert "rotation r-1 (cli)" in report["errors"][0] and "nothing changed" in report["errors"][0]
    assert sim.received_cluster_updates == []  # not even the dry run
    # once the rotation ends, the same command applies
    result = runner.invoke(app, ["policy", "apply", "sim", "-c", str(tmp_path / "inv.yaml"), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["clusters"][0]["status"] == "applied"


def test_the_locks_follow_the_listeners_the_policy_changes() -> None:
    from rotation.core.targets import POLICY_APPLY_OWNER as owner

    assert owner == POLICY_APPLY_OWNER
    from rotation.core.tls_rules import TLSPolicy
    from rotation.usecases.tls_apply import locked_certificates

    assert locked_certificates(TLSPolicy(min_control_tls="1.3"), None) == ["cm", "api", "metrics_exporter",
                                                                       "rest_client"]
    assert locked_certificates(TLSPolicy(data_cipher_list="x", sentinel_tls_mode="required"), None) == ["proxy"]
    assert locked_certificates(TLSPolicy(), False) == ["rest_client"]


def test_a_rotation_that_meets_a_policy_apply_is_refused_and_tried_again(
    tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path], state_dir: Path
) -> None:
    inventory = _inventory(tmp_path, sim, ca_files, DATA_POLICY)
    with ServiceContext(inventory=lambda: inventory) as ctx:
        with ctx.state.hold(inventory.cluster("sim").identity, "proxy", POLICY_APPLY_OWNER):
            (record,) = rotate_here(inventory, "sim", ["proxy"], RotationOptions(poll_interval=0.1), ctx)
    assert record.outcome is Outcome.REFUSED and not sim.received_update_bodies
    assert POLICY_APPLY_OWNER in (record.error or "")
    assert record.retryable  # not a second rotation of proxy: the task tries again in seconds


def test_sigterm_after_the_change_reports_it_made_and_not_proven(
    tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path], state_dir: Path
) -> None:
    inventory = _inventory(tmp_path, sim, ca_files, {"min_control_tls": "1.3"})
    sim.override_node_tls(1, "cm", min_version="1.2")  # node 1 keeps accepting 1.2: the apply waits for it

    class SigtermWhileWaiting(FakeClock):
        def sleep(self, seconds: float) -> None:
            os.kill(os.getpid(), signal.SIGTERM)  # a real SIGTERM, taken by the CLI's handler
            super().sleep(seconds)

    clock = SigtermWhileWaiting()
    with ServiceContext(inventory=lambda: inventory) as ctx:
        import rotation.usecases.tls_apply as tls_apply

        reports = []
        with tls_apply.interrupts.sigterm_unwinds():
            reports.append(apply_policy(inventory, "sim", state=ctx.state, clock=clock))
        (report,) = reports
        assert report.status == "interrupted" and report.exit_code == 1, report.errors
        assert "SIGTERM after PUT /v1/cluster: the change is made, not proven" in report.errors[0]
        assert sim.cluster_settings()["min_control_TLS_version"] == "1.3" and len(clock.slept) == 1
        (kept,) = ctx.state.history("sim", "tls_policy")  # its record says so too
        assert kept.outcome is Outcome.FAILED and kept.finished_at is not None and kept.policy is not None
        assert kept.policy["status"] == "interrupted" and kept.policy["sent"] == {"min_control_TLS_version": "1.3"}
        # the locks went with it: a rotation may start at once
        (record,) = rotate_here(inventory, "sim", ["cm"], RotationOptions(poll_interval=0.1), ctx)
        assert record.outcome is Outcome.VERIFIED, record.error


def test_a_change_whose_answer_never_came_says_the_cluster_may_have_taken_it(
    tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path], state_dir: Path
) -> None:
    inventory = _inventory(tmp_path, sim, ca_files, {"min_control_tls": "1.3"})
    with ServiceContext(inventory=lambda: inventory) as ctx:
        sim.log_requests()
        sim.fail_requests(1, 503, method="PUT", path="/v1/cluster")  # the dry run: nothing sent after it
        (refused,) = apply_policies(inventory, ["sim"], state=ctx.state)
        assert refused.status == "refused" and not refused.sent
        puts = [i for i, r in enumerate(sim.logged_requests()) if r.startswith("PUT /v1/cluster")]
        sim.fail_nth(puts[0] + 2, "reset")  # the PUT after the dry run: applied, its answer never comes
        (report,) = apply_policies(inventory, ["sim"], state=ctx.state)
    assert report.status == "error" and report.exit_code == 2, report.errors
    assert "the cluster may have taken the change" in report.errors[-1]
    assert sim.cluster_settings()["min_control_TLS_version"] == "1.3"


def test_the_applys_audit_is_kept_for_the_drift_metric(
    tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path], state_dir: Path
) -> None:
    inventory = _inventory(tmp_path, sim, ca_files, {"min_control_tls": "1.3"})
    with ServiceContext(inventory=lambda: inventory) as ctx:
        ctx.state.record_policy_audit("sim", drift=3, errors=0, summary="sim: 3 TLS policy drift(s)")  # last night
        (report,) = apply_policies(inventory, ["sim"], state=ctx.state)
        assert report.status == "applied", report.errors
        kept = ctx.state.scans()["sim"]
    assert kept["policy_drift"] == "0" and kept["policy_errors"] == "0"
    assert kept["policy_summary"].startswith("policy apply (applied): sim: TLS policy compliant")
