"""Certificate (mTLS) login on a cluster with Basic turned off (RS 8.2): `check`, `config check`,
`rotate --all`, `policy audit` and `policy apply` log in with the client certificate alone; Basic
credentials alone get an error that says what to do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support.cert_login import ca_files, managed_inventory
from support.cluster import start_simulator, write_inventory
from typer.testing import CliRunner

from rotation.adapters.issuers.internal_ca import init_ca
from rotation.config import load_inventory
from rotation.simulator import ClusterSimulator
from rotation.usecases.check import check_clusters
from workers.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def basic_off(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ClusterSimulator, Path]]:
    """A 3-node 8.2 cluster with certificate login on and Basic off, and an internal CA for rotations."""
    tmp = tmp_path_factory.mktemp("basic-off")
    sim = start_simulator(tmp, version="8.2.0-46")
    sim.cert_login.enable(basic=False)
    try:
        yield sim, tmp
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def ca_module(basic_off: tuple[ClusterSimulator, Path]) -> tuple[Path, Path]:
    return init_ca(basic_off[1] / "ca", common_name="test internal CA")


def test_basic_credentials_alone_get_a_clear_error(basic_off: tuple[ClusterSimulator, Path],
                                                    ca_module: tuple[Path, Path], tmp_path: Path) -> None:
    sim, _ = basic_off
    inventory = load_inventory(write_inventory(tmp_path / "inv.yaml", sim, ca_module))
    report = check_clusters(inventory, ["sim"])
    assert report.exit_code == 2 and not report.states
    (error,) = report.errors
    assert "refused the username or password (HTTP 401)" in error
    assert "Basic authentication is turned off" in error and "client_cert_file" in error
    assert sim.admin_password not in error


def test_config_check_proves_the_certificate_on_every_node(basic_off: tuple[ClusterSimulator, Path],
                                                           ca_module: tuple[Path, Path], tmp_path: Path,
                                                           state_dir: Path) -> None:
    sim, _ = basic_off
    path = write_inventory(tmp_path / "inv.yaml", sim, ca_module, login="certificate")
    assert "username" not in yaml.safe_load(path.read_text())["clusters"]["sim"]
    result = runner.invoke(app, ["config", "check", "-c", str(path), "--json"])
    assert result.exit_code == 0, result.output
    found = {f["where"]: f for f in json.loads(result.stdout)["findings"]}
    assert "clusters.sim.password" not in found  # nothing to read: no Basic credentials at all
    login = found["clusters.sim.client_cert_file"]
    assert login["severity"] == "ok" and "every node" in login["message"]
    assert all(address in login["message"] for address in sim.node_addresses)
    sim.node_down(3)
    try:
        result = runner.invoke(app, ["config", "check", "-c", str(path), "--json"])
    finally:
        sim.node_down(3, down=False)
    login = {f["where"]: f for f in json.loads(result.stdout)["findings"]}["clusters.sim.client_cert_file"]
    assert result.exit_code == 2 and login["severity"] == "error" and "node 3" in login["message"]


def test_check_rotate_all_and_policy_with_the_certificate_alone(basic_off: tuple[ClusterSimulator, Path],
                                                                ca_module: tuple[Path, Path], tmp_path: Path,
                                                                state_dir: Path) -> None:
    sim, tmp = basic_off
    assert sim.accounts.client_ca is not None
    path = managed_inventory(tmp_path / "inv.yaml", sim, ca_module, ca_files(sim.accounts.client_ca, tmp / "cca"))
    data = yaml.safe_load(path.read_text())
    data["clusters"]["sim"]["tls_policy"] = {"min_data_tls": "1.3"}
    path.write_text(yaml.safe_dump(data))
    report = check_clusters(load_inventory(path), ["sim"])
    assert not report.errors and {s.cert_name for s in report.states} >= {"api", "proxy", "syncer", "rest_client"}
    rotated = runner.invoke(app, ["rotate", "sim", "--all", "--inline", "-c", str(path), "--json"])
    assert rotated.exit_code == 0, rotated.output
    records = json.loads(rotated.stdout)
    assert {r["cert_name"]: r["outcome"] for r in records} == {
        name: "verified" for name in ("cm", "api", "proxy", "syncer", "metrics_exporter", "rest_client")}
    audit = runner.invoke(app, ["policy", "audit", "sim", "-c", str(path), "--json", "--no-ciphers"])
    assert audit.exit_code == 1 and not json.loads(audit.stdout)["clusters"][0]["errors"]  # drift: data 1.2
    applied = runner.invoke(app, ["policy", "apply", "sim", "-c", str(path), "--json"])
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.stdout)["clusters"][0]["status"] == "applied"
    assert sim.cluster_settings()["min_data_TLS_version"] == "1.3"
    assert sim.cluster_settings()["control_plane_basic_authentication"] is False
