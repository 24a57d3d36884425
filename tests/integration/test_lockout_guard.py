"""The self-lockout guard: every change after which the tool could no longer log in is refused before
any change call, and the cluster is left as it was (the api path: test_operator_faults; the tool's
own certificate and the client CA: test_rest_client)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cert_login import SUBJECT
from support.cluster import start_simulator, write_inventory
from support.rest import Rest, client_ca
from typer.testing import CliRunner

from rotation.adapters.cluster import open_cluster
from rotation.config import load_inventory
from rotation.core.errors import LockoutRefused
from rotation.simulator import ClusterSimulator
from rotation.usecases.login_guard import keep_trusted_ca
from workers.main import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(autouse=True)
def _own_state(state_dir: Path) -> None:
    """`policy apply` holds the locks of the certificates it affects: in this test's own folder."""


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ClusterSimulator]:
    simulator = start_simulator(tmp_path, version="8.2.0-46", nodes=2)
    simulator.cert_login.enable(SUBJECT)  # certificate login on, Basic still on
    yield simulator
    simulator.stop()


def _apply(path: Path) -> tuple[int, dict]:
    result = runner.invoke(app, ["policy", "apply", "sim", "-c", str(path), "--json"])
    return result.exit_code, json.loads(result.stdout)["clusters"][0]


def test_basic_off_needs_a_certificate_that_logs_in_everywhere(sim: ClusterSimulator, ca_files: tuple[Path, Path],
                                                               tmp_path: Path) -> None:
    path = write_inventory(tmp_path / "inv.yaml", sim, ca_files, login="both", cluster_overrides={"basic_auth": False})
    admin = Rest(sim)
    robot = next(u for u in admin("GET", "/v1/users").json() if u["auth_method"] == "certificate")
    moved = admin("PUT", f"/v1/users/{robot['uid']}", json={"certificate_subject_line": "CN=someone-else"})
    assert moved.status_code == 200  # the tool's certificate maps to no user any more
    code, report = _apply(path)
    assert code == 2 and report["status"] == "refused"
    assert "Basic off would lock the tool out" in report["errors"][0] and "Break glass" in report["errors"][0]
    assert sim.received_cluster_updates == [] and sim.cluster_settings()["control_plane_basic_authentication"]
    admin("PUT", f"/v1/users/{robot['uid']}", json={"certificate_subject_line": SUBJECT})
    code, report = _apply(path)
    assert code == 0 and report["status"] == "applied", report
    assert sim.cluster_settings()["control_plane_basic_authentication"] is False
    assert [dry for dry, _ in sim.received_cluster_updates] == [True, True, False]  # the certificate's own dry run
    assert admin("GET", "/v1/nodes").status_code == 401


def test_a_tls_policy_the_rest_client_cannot_speak_is_refused(sim: ClusterSimulator, ca_files: tuple[Path, Path],
                                                              tmp_path: Path) -> None:
    path = write_inventory(tmp_path / "inv.yaml", sim, ca_files, cluster_overrides={
        "tls_policy": {"min_control_tls": "1.3"}})
    config = tmp_path / "openssl.cnf"  # a REST client that speaks TLS 1.2 at most (an older or FIPS OpenSSL)
    config.write_text("openssl_conf = c\n[c]\nssl_conf = s\n[s]\nsystem_default = d\n[d]\nMaxProtocol = TLSv1.2\n")
    env = {**os.environ, "OPENSSL_CONF": str(config), "ROTATION_STORE": "local",
           "ROTATION_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-m", "workers.main", "policy", "apply", "sim", "-c", str(path), "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    report = json.loads(done.stdout)["clusters"][0]
    assert done.returncode == 2 and report["status"] == "refused", done.stderr
    assert "could not talk to the REST API" in report["errors"][0]
    assert sim.received_cluster_updates == [] and sim.cluster_settings()["min_control_TLS_version"] == "1.2"
    code, report = _apply(path)  # this process's client speaks TLS 1.3: the same policy is applied
    assert code == 0 and report["status"] == "applied", report


def test_a_trusted_ca_bundle_without_the_ca_in_use_is_refused(sim: ClusterSimulator, ca_files: tuple[Path, Path],
                                                              tmp_path: Path) -> None:
    inventory = load_inventory(write_inventory(tmp_path / "inv.yaml", sim, ca_files, login="certificate"))
    with open_cluster(inventory, "sim") as session:
        in_use = session.settings.client_certificate("sim")
        assert sim.accounts.client_ca is not None
        keep_trusted_ca(session, sim.accounts.client_ca.pem + client_ca("next").pem, in_use, "union")  # accepted
        with pytest.raises(LockoutRefused, match="would not accept the client certificate the tool logs in with"):
            keep_trusted_ca(session, client_ca("next").pem, in_use, "replacing the client CA")
    assert sim.received_update_bodies == []
    assert Rest(sim)("GET", "/v1/cluster/certificates").json()["mtls_trusted_ca_cert"] == sim.accounts.client_ca.pem
