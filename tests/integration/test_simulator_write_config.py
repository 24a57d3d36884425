"""`rotation simulator --write-config F` writes an inventory that rotates as it is: an internal CA
beside it, the issuer naming it, the cluster's issuer, verify and password (issue 18, item 3)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from support.cluster import free_loopback_base
from typer.testing import CliRunner

from rotation.config import load_inventory
from rotation.simulator import ClusterSimulator, SimulatorConfig
from rotation.simulator.inventory import ReadyInventory
from workers.main import app

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def rotation(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real console script, as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "workers.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def served_certificate(address: str, port: int) -> x509.Certificate:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((address, port), timeout=5) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der
    return x509.load_der_x509_certificate(der)


def test_the_written_inventory_checks_and_rotates_with_no_edit(tmp_path: Path) -> None:
    base = free_loopback_base()
    inventory = tmp_path / "lab" / "rotation.yaml"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RS_SIM_PASSWORD": "trial-password-2026",
           "ROTATION_STORE": "local", "ROTATION_STATE_DIR": str(tmp_path / "state")}
    env.pop("ROTATION_CONFIG", None)
    simulator = subprocess.Popen(
        [sys.executable, "-m", "workers.main", "simulator", "--nodes", "2", "--first-address", base,
         "--state-dir", str(tmp_path / "lab" / "sim"), "--write-config", str(inventory), "--databases", "12000"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert simulator.stdout is not None
        lines = []
        for line in simulator.stdout:  # the simulator says so once it serves
            lines.append(line)
            if line.startswith("Serving"):
                break
        assert any(line.startswith(f"Wrote cluster 'sim' to {inventory}") for line in lines), lines
        written = yaml.safe_load(inventory.read_text())
        assert written["issuers"]["internal"] == {"type": "internal_ca", "ca_cert": "pki/ca.pem",
                                                  "ca_key_file": "pki/ca-key.pem"}
        cluster = written["clusters"]["sim"]
        assert cluster["issuer"] == "internal" and cluster["password_env"] == "RS_SIM_PASSWORD"
        assert "password_file" not in cluster  # the variable it came from, not a copy on disk
        assert (inventory.parent / "pki" / "ca-key.pem").stat().st_mode & 0o777 == 0o600
        assert Path(cluster["verify"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
        health = [sys.executable, str(ROOT / "deploy" / "healthcheck.py"), "inventory", str(inventory)]
        assert subprocess.run(health, capture_output=True, timeout=30).returncode == 0  # compose's check

        check = rotation("check", "-c", str(inventory), env=env)
        assert check.returncode == 0, check.stdout + check.stderr
        rotate = rotation("rotate", "sim", "proxy", "--inline", "-c", str(inventory), env=env)
        assert rotate.returncode == 0, rotate.stdout + rotate.stderr
        # every node now serves a proxy certificate from the internal CA written beside the inventory
        ca = x509.load_pem_x509_certificate((inventory.parent / "pki" / "ca.pem").read_bytes())
        for node in (base, base[:-1] + "2"):
            served = served_certificate(node, 12000)
            assert served.issuer == ca.subject
            served.verify_directly_issued_by(ca)
    finally:
        simulator.send_signal(signal.SIGTERM)
        simulator.communicate(timeout=15)
    assert simulator.returncode == 0
    assert subprocess.run(health, capture_output=True, timeout=30).returncode == 1  # nothing listens


def test_a_second_write_reuses_the_ca_and_keeps_what_the_operator_wrote(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    sim = ClusterSimulator(SimulatorConfig(first_address=free_loopback_base(), state_dir=tmp_path / "sim"))
    path = tmp_path / "rotation.yaml"
    monkeypatch.delenv("RS_SIM_PASSWORD", raising=False)
    sim.ca_path.parent.mkdir(parents=True)
    sim.ca_path.write_text(sim.ca_pem)  # as a serving simulator has before it writes the inventory
    ReadyInventory.prepare(path, NOW).write("sim", sim.inventory_entry("sim"), sim.admin_password)
    key = (tmp_path / "pki" / "ca-key.pem").read_bytes()
    ca = x509.load_pem_x509_certificate((tmp_path / "pki" / "ca.pem").read_bytes())
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.not_valid_before_utc <= NOW < ca.not_valid_after_utc
    cluster = load_inventory(path).cluster("sim")  # the real loader takes it as written
    assert cluster.issuer == "internal" and cluster.password_file == sim.password_path.resolve()
    # every file it names is under the inventory's folder: one volume carries it (docker-compose.yml)
    entry = yaml.safe_load(path.read_text())["clusters"]["sim"]
    assert all(Path(entry[k]).is_relative_to(tmp_path) for k in ("verify", "password_file"))

    # a password taken from RS_SIM_PASSWORD is named by it; one given otherwise stays in its file
    monkeypatch.setenv("RS_SIM_PASSWORD", sim.admin_password)
    ReadyInventory.prepare(path, NOW).write("sim", sim.inventory_entry("sim"), sim.admin_password)
    assert (tmp_path / "pki" / "ca-key.pem").read_bytes() == key  # the CA outlives a restart
    assert yaml.safe_load(path.read_text())["clusters"]["sim"]["password_env"] == "RS_SIM_PASSWORD"
    monkeypatch.setenv("RS_SIM_PASSWORD", "another-password")
    ReadyInventory.prepare(path, NOW).write("sim", sim.inventory_entry("sim"), sim.admin_password)
    assert "password_file" in yaml.safe_load(path.read_text())["clusters"]["sim"]

    # an `internal` issuer the operator wrote is theirs: kept as it is, and no CA is created
    own = tmp_path / "own"
    own.mkdir()
    theirs = {"type": "files", "cert_file": "/etc/pki/rs/fullchain.pem", "key_file": "/etc/pki/rs/key.pem"}
    (own / "rotation.yaml").write_text(yaml.safe_dump({"renew_before": "21d", "issuers": {"internal": theirs},
                                                       "clusters": {"east": {"url": "https://east:9443"}}}))
    note = ReadyInventory.prepare(own / "rotation.yaml", NOW).write("lab", sim.inventory_entry("lab"), None)
    data = yaml.safe_load((own / "rotation.yaml").read_text())
    assert data["issuers"] == {"internal": theirs} and data["renew_before"] == "21d"
    assert set(data["clusters"]) == {"east", "lab"} and data["clusters"]["lab"]["issuer"] == "internal"
    assert not (own / "pki").exists() and "kept" in note


def test_half_a_ca_is_refused_before_the_simulator_starts(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    result = CliRunner().invoke(app, ["simulator", "--first-address", free_loopback_base(), "--state-dir",
                                      str(tmp_path / "sim"), "--write-config", str(tmp_path / "rotation.yaml")],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 2
    said = " ".join(result.output.replace("│", " ").split())  # unwrap rich's error box
    assert "ca.pem exists but" in said and "ca-key.pem is missing" in said and "Serving" not in said, said
    assert not (tmp_path / "rotation.yaml").exists() and not (tmp_path / "sim").exists()
