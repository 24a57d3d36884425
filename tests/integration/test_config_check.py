"""`rotation config check`: what the inventory names is proven usable, and nothing is changed."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from test_pipeline import served_everywhere
from typer.testing import CliRunner

from rotation.core.model import CertName
from rotation.simulator import ClusterSimulator
from workers.main import app

runner = CliRunner()


def findings(result_output: str) -> dict[str, dict[str, str]]:
    return {f["where"]: f for f in json.loads(result_output)["findings"]}


def test_a_usable_inventory_passes_and_nothing_changes(simulator: ClusterSimulator, inventory_path: Path,
                                                         state_dir: Path) -> None:
    before = served_everywhere(simulator, CertName.PROXY)
    updates = len(simulator.state.received_update_bodies)
    result = runner.invoke(app, ["config", "check", "-c", str(inventory_path), "--json"])
    assert result.exit_code == 0, result.output
    found = findings(result.stdout)
    assert found["clusters.sim.url"]["severity"] == "ok"
    assert found["clusters.sim.password"]["severity"] == "ok"
    assert found["issuers.internal"]["severity"] == "ok"
    assert served_everywhere(simulator, CertName.PROXY) == before
    assert len(simulator.state.received_update_bodies) == updates


def test_each_broken_part_is_named(simulator: ClusterSimulator, inventory_path: Path, state_dir: Path,
                                   tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    data = yaml.safe_load(inventory_path.read_text())
    data["issuers"]["internal"]["ca_key_file"] = str(tmp_path / "missing-key.pem")
    cluster = data["clusters"]["sim"]
    cluster.pop("password_file", None)
    cluster["password_env"] = "SIM_PASSWORD_NOT_SET"
    monkeypatch.delenv("SIM_PASSWORD_NOT_SET", raising=False)
    inventory_path.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["config", "check", "-c", str(inventory_path), "--json"])
    assert result.exit_code == 2
    found = findings(result.stdout)
    assert found["clusters.sim.password"]["severity"] == "error"
    assert "SIM_PASSWORD_NOT_SET" in found["clusters.sim.password"]["message"]
    assert found["issuers.internal"]["severity"] == "error"
    assert "missing-key.pem" in found["issuers.internal"]["message"]
    assert found["clusters.sim.url"]["severity"] == "error"  # no password: no login


def test_offline_skips_the_network(simulator: ClusterSimulator, inventory_path: Path, state_dir: Path) -> None:
    simulator.stop()
    result = runner.invoke(app, ["config", "check", "-c", str(inventory_path), "--offline"])
    assert result.exit_code == 0, result.output
    online = runner.invoke(app, ["config", "check", "-c", str(inventory_path), "--json"])
    assert online.exit_code == 2
    assert findings(online.stdout)["clusters.sim.url"]["severity"] == "error"


def test_a_renew_before_leaving_no_room_for_a_second_scan_is_a_warning(
        simulator: ClusterSimulator, inventory_path: Path, state_dir: Path, monkeypatch) -> None:  # noqa: ANN001
    """renew_before 90m with a scan every hour: a certificate that enters it is scanned once, maybe twice,
    before it expires; one failed rotation (or a scan falling just after) and it expires unrotated. Nothing
    said so; 30d leaves room."""
    data = yaml.safe_load(inventory_path.read_text())
    data["clusters"]["sim"]["certificates"] = {"cm": {"renew_before": "90m"}, "api": {}}
    inventory_path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("ROTATION_SCAN_INTERVAL", "1h")
    result = runner.invoke(app, ["config", "check", "-c", str(inventory_path), "--offline", "--json"])
    assert result.exit_code == 0, result.output  # a warning, not an error
    found = findings(result.stdout)
    assert found["clusters.sim.cm"]["severity"] == "warning", found
    assert "renew_before 90m" in found["clusters.sim.cm"]["message"]
    assert "clusters.sim.api" not in found or found["clusters.sim.api"]["severity"] != "warning"
