"""The CLI end to end against the simulator: output, --json and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.cluster import handshake_fingerprint
from typer.testing import CliRunner

from rotation.cli.main import app
from rotation.simulator import ClusterSimulator

runner = CliRunner()


def test_check_reports_due_then_rotate_all_then_ok(
    simulator: ClusterSimulator, inventory_path: Path, state_dir: Path
) -> None:
    result = runner.invoke(app, ["check", "-c", str(inventory_path), "--json"])
    assert result.exit_code == 1, result.output  # the simulator's certificates expire in 5 days
    rows = json.loads(result.stdout)["rows"]
    assert {r["status"] for r in rows} == {"due"}
    assert {r["cert"] for r in rows} == {"cm", "api", "proxy", "syncer", "metrics_exporter"}
    assert len([r for r in rows if r["cert"] == "cm"]) == 3

    result = runner.invoke(app, ["rotate", "sim", "--all", "-c", str(inventory_path), "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert {r["outcome"] for r in records} == {"verified"}
    cm = next(r for r in records if r["cert_name"] == "cm")
    address = simulator.node_addresses[1]
    assert handshake_fingerprint(address, simulator.config.cm_port, "cluster.test.local") == cm["new_fingerprint"]

    result = runner.invoke(app, ["check", "-c", str(inventory_path)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.stdout

    result = runner.invoke(app, ["history", "--json"])
    assert result.exit_code == 0
    assert len(json.loads(result.stdout)) == 5


def test_check_mismatch_between_nodes_exits_1(simulator: ClusterSimulator, inventory_path: Path,
                                               state_dir: Path) -> None:
    simulator.stale(2, seconds=None, cert_name="cm")
    result = runner.invoke(app, ["rotate", "sim", "cm", "-c", str(inventory_path), "--verify-deadline", "1s"])
    assert result.exit_code == 1
    assert "rolled_back" in result.stdout


def test_check_unreachable_exits_2(simulator: ClusterSimulator, inventory_path: Path, state_dir: Path) -> None:
    simulator.node_down(3)
    result = runner.invoke(app, ["check", "-c", str(inventory_path), "--json"])
    assert result.exit_code == 2
    rows = json.loads(result.stdout)["rows"]
    assert any(r["status"] == "unreachable" for r in rows)


def test_rotate_dry_run_and_unknown_names(simulator: ClusterSimulator, inventory_path: Path,
                                          state_dir: Path) -> None:
    result = runner.invoke(app, ["rotate", "sim", "proxy", "--dry-run", "-c", str(inventory_path)])
    assert result.exit_code == 0, result.output
    assert "dry_run" in result.stdout
    result = runner.invoke(app, ["rotate", "sim", "ldap", "-c", str(inventory_path)])
    assert result.exit_code == 2
    assert "unknown certificate name 'ldap'" in result.stderr
    result = runner.invoke(app, ["rotate", "east", "proxy", "-c", str(inventory_path)])
    assert result.exit_code == 2
    assert "unknown cluster 'east'" in result.stderr


def test_bad_config_exits_2_naming_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "rotation.yaml"
    path.write_text("clusters:\n  x:\n    url: http://a\n")
    result = runner.invoke(app, ["check", "-c", str(path)])
    assert result.exit_code == 2
    assert str(path) in result.stderr and "clusters.x.url" in result.stderr


def test_ca_init_writes_a_usable_ca(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ca", "init", "--dir", str(tmp_path / "ca")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ca" / "ca.pem").exists()
    assert (tmp_path / "ca" / "ca-key.pem").stat().st_mode & 0o077 == 0
    again = runner.invoke(app, ["ca", "init", "--dir", str(tmp_path / "ca")])
    assert again.exit_code == 2


def test_console_script_help() -> None:
    result = subprocess.run([sys.executable, "-m", "workers.main", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    for command in ("check", "rotate", "history", "simulator", "ca"):
        assert command in result.stdout


def test_status_history_and_retry_read_the_local_state_without_redis(
    simulator: ClusterSimulator, inventory_path: Path, state_dir: Path
) -> None:
    simulator.fail_next(1, 400)  # RS refuses the certificate: a real failure, with backoff
    result = runner.invoke(app, ["rotate", "sim", "cm", "--inline", "-c", str(inventory_path), "--json"])
    assert result.exit_code == 2, result.output
    status = runner.invoke(app, ["status", "-c", str(inventory_path), "--json"])
    assert status.exit_code == 0, status.output
    (row,) = json.loads(status.stdout)["certificates"]
    assert (row["cert"], row["last_outcome"], row["failures"]) == ("cm", "refused", 1) and row["backoff"]
    assert json.loads(runner.invoke(app, ["history", "--audit", "--json"]).stdout) == []  # no webhook here
    cleared = runner.invoke(app, ["retry", "sim", "cm", "-c", str(inventory_path)])
    assert cleared.exit_code == 0 and "backoff cleared (1 failure(s)" in cleared.stdout
    assert json.loads(runner.invoke(app, ["status", "-c", str(inventory_path), "--json"]).stdout)[
        "certificates"][0]["backoff"] is None
