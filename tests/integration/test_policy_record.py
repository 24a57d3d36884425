"""`rotation policy apply` leaves one record per cluster it changes in the service's state (who, when, the
settings before and after, what was sent, the outcome), shown by `rotation history`; a dry run leaves none."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest
from support.cluster import write_inventory
from typer.testing import CliRunner

from rotation.cli.main import app
from rotation.core.topology import TLS_FIELDS
from rotation.simulator import ClusterSimulator
from rotation.usecases.context import ServiceContext

runner = CliRunner()
POLICY = {"min_control_tls": "1.3"}
SENT = {"min_control_TLS_version": "1.3"}
READ_FIELDS = TLS_FIELDS | {"control_plane_basic_authentication"}  # what a record keeps of GET /v1/cluster


@pytest.fixture(params=["local", "redis"])
def store(request: pytest.FixtureRequest, state_dir: Path) -> str:
    if request.param == "redis":
        request.getfixturevalue("redis_store")
    return str(request.param)


def _inventory(tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path]) -> Path:
    return write_inventory(tmp_path / "inv.yaml", sim, ca_files, cluster_overrides={"tls_policy": POLICY})


def _apply(inventory: Path, *args: str) -> dict:
    result = runner.invoke(app, ["policy", "apply", "sim", "-c", str(inventory), "--json", *args])
    return json.loads(result.stdout)["clusters"][0]


def _history(inventory: Path, *args: str) -> list[dict]:
    result = runner.invoke(app, ["history", "-c", str(inventory), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _me() -> str:
    return f"cli:{getpass.getuser()}"


def test_an_apply_leaves_its_record_and_history_shows_it(
    tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path], store: str
) -> None:
    inventory = _inventory(tmp_path, sim, ca_files)
    before = sim.cluster_settings()["min_control_TLS_version"]
    dry_run = _apply(inventory, "--dry-run")
    assert dry_run["status"] == "dry_run" and dry_run["record"] is None
    assert _history(inventory) == []  # a dry run changes nothing and leaves no record

    applied = _apply(inventory)
    assert applied["status"] == "applied"
    (record,) = _history(inventory)
    assert applied["record"] == record["id"]
    assert record["kind"] == "policy" and record["cluster"] == "sim" and record["cert_name"] == "tls_policy"
    assert record["trigger"] == "cli" and record["requested_by"] == _me()
    assert record["outcome"] == "verified" and record["error"] is None
    assert record["started_at"] <= record["finished_at"]
    change = record["policy"]
    assert change["status"] == "applied" and change["sent"] == SENT
    assert change["before"]["min_control_TLS_version"] == before != "1.3"
    assert change["after"]["min_control_TLS_version"] == "1.3"
    assert set(change["before"]) <= READ_FIELDS and set(change["after"]) <= READ_FIELDS  # no secret RS holds
    assert sim.admin_password not in json.dumps(record)
    assert _history(inventory, "--policy") == [record]
    assert _history(inventory, "--policy", "--cluster", "sim") == [record]
    assert _history(inventory, "--id", record["id"]) == [record]

    table = runner.invoke(app, ["history", "-c", str(inventory)])
    # from what to what, under the table
    assert table.exit_code == 0 and f"sim/tls_policy: min_control_TLS_version {before!r} -> '1.3'" in table.stdout


def test_a_refused_apply_is_recorded_and_changed_nothing(
    tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path], state_dir: Path
) -> None:
    inventory = _inventory(tmp_path, sim, ca_files)
    with ServiceContext(config_path=inventory) as ctx, \
            ctx.state.hold(ctx.inventory().cluster("sim").identity, "api", "rotation r-1 (cli)"):
        assert _apply(inventory)["status"] == "refused"
    (record,) = _history(inventory, "--policy")
    assert record["outcome"] == "refused" and record["requested_by"] == _me()
    assert "rotation r-1 (cli)" in record["error"] and "nothing changed" in record["error"]
    change = record["policy"]
    assert change["status"] == "refused" and change["sent"] is None  # nothing was sent
    assert change["before"] is None and change["after"] is None  # nor read: the locks come before the first read
    assert sim.received_cluster_updates == []


def test_a_change_whose_answer_never_came_is_recorded_as_maybe_taken(
    tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path], store: str
) -> None:
    inventory = _inventory(tmp_path, sim, ca_files)
    sim.log_requests()
    sim.fail_requests(1, 503, method="PUT", path="/v1/cluster")  # its dry run refused: nothing sent
    assert _apply(inventory)["status"] == "refused"
    puts = [i for i, r in enumerate(sim.logged_requests()) if r.startswith("PUT /v1/cluster")]
    sim.fail_nth(puts[0] + 2, "reset")  # the PUT after the dry run: applied, its answer never comes
    assert _apply(inventory)["status"] == "error"

    failed, refused = _history(inventory)
    assert refused["outcome"] == "refused" and refused["policy"]["sent"] is None
    assert refused["policy"]["before"]["min_control_TLS_version"] != "1.3" and refused["policy"]["after"] is None
    assert "refused the change in its dry run" in refused["error"]
    assert failed["outcome"] == "failed" and failed["policy"]["status"] == "error"
    assert failed["policy"]["sent"] == SENT and failed["policy"]["after"] is None
    assert "the cluster may have taken the change" in failed["error"]
    assert failed["finished_at"] is not None and failed["requested_by"] == _me()
    assert sim.cluster_settings()["min_control_TLS_version"] == "1.3"  # it did


def test_history_policy_is_not_a_certificate(state_dir: Path) -> None:
    both = runner.invoke(app, ["history", "--policy", "--cert", "api", "--json"])
    assert both.exit_code == 2 and json.loads(both.stdout)["error"].startswith("--policy shows the TLS policy")
    with_id = runner.invoke(app, ["history", "--id", "abc", "--policy", "--json"])
    assert with_id.exit_code == 2 and "--id shows one rotation, --policy chooses" in json.loads(with_id.stdout)["error"]


def test_an_apply_whose_process_died_is_ended_by_the_next_apply(
    tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path], store: str
) -> None:
    """A killed apply (SIGKILL, its host lost) leaves its record `in_progress`, which nothing else ends: the next
    apply of that cluster, holding its locks, ends it as interrupted, saying the change may have been taken."""
    from rotation.core.model import RotationRecord, Trigger
    from rotation.core.targets import TLS_POLICY

    inventory = _inventory(tmp_path, sim, ca_files)
    with ServiceContext(config_path=inventory) as ctx:
        killed = RotationRecord(id="killed-apply", cluster="sim", cert_name=TLS_POLICY, trigger=Trigger.CLI,
                                started_at=ctx.clock.now(), requested_by=_me(),
                                policy={"status": "in_progress", "before": None, "sent": None, "after": None})
        ctx.state.save(killed)  # what the killed process left: its first save
    applied = _apply(inventory)
    assert any("killed-apply" in note and "interrupted" in note for note in applied["notes"]), applied
    records = {r["id"]: r for r in _history(inventory, "--policy")}
    ended = records["killed-apply"]
    assert ended["outcome"] == "failed" and ended["finished_at"] is not None
    assert ended["policy"]["status"] == "interrupted" and "may have taken its change" in ended["error"]
    assert records[applied["record"]]["outcome"] == "verified"
