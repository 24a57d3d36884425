"""`rotation policy apply|audit` against the simulator (both version profiles), the simulator's
PUT /v1/cluster, and the pipeline's ECDSA-vs-RSA-suites guard."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.cluster import start_simulator, write_inventory
from support.rotate import rotate_here
from typer.testing import CliRunner

from rotation.cli.main import app
from rotation.config import load_inventory
from rotation.core.model import Outcome
from rotation.simulator import ClusterSimulator, Database
from rotation.usecases.rotate.run import RotationOptions

ONE_DB = [Database(1, "db1", 12000, True, "all-nodes")]
RSA_ONLY = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"
runner = CliRunner()


def _sim(tmp_path: Path, version: str) -> ClusterSimulator:
    return start_simulator(tmp_path, nodes=2, databases=ONE_DB, version=version)


@pytest.fixture(autouse=True)
def _own_state(state_dir: Path) -> None:
    """`policy apply` holds the locks of the certificates it affects: in this test's own folder."""


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ClusterSimulator]:
    simulator = _sim(tmp_path, "7.22.2-14")
    try:
        yield simulator
    finally:
        simulator.stop()


def _inventory(tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path], policy: dict | None,
               **extra: object) -> Path:
    overrides = {"tls_policy": policy, **extra} if policy else dict(extra)
    return write_inventory(tmp_path / "inv.yaml", sim, ca_files, cluster_overrides=overrides)


def _run(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["policy", *args, "--json"])
    return result.exit_code, json.loads(result.stdout)


def _put(sim: ClusterSimulator, body: dict, query: str = "") -> httpx.Response:
    with httpx.Client(verify=False) as client:  # noqa: S501 - loopback simulator
        return client.put(f"https://{sim.node_addresses[0]}:9443/v1/cluster{query}", json=body,
                          auth=(sim.admin_username, sim.admin_password))


# --- apply on both profiles ------------------------------------------------------------------
def test_apply_on_a_current_cluster_is_proved_by_handshakes(
    tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path]
) -> None:
    policy = {"min_control_tls": "1.3", "data_cipher_list": "ECDHE-ECDSA-AES256-GCM-SHA384"}
    code, out = _run("apply", "sim", "-c", str(_inventory(tmp_path, sim, ca_files, policy)))
    (report,) = out["clusters"]
    assert code == 0 and report["status"] == "applied", report
    assert [dry for dry, _ in sim.received_cluster_updates] == [True, False]  # the API's dry run first
    assert sim.received_cluster_updates[1][1] == {"min_control_TLS_version": "1.3",
                                                  "data_cipher_list": "ECDHE-ECDSA-AES256-GCM-SHA384"}
    endpoints = report["audit"]["endpoints"]
    cm = next(e for e in endpoints if e["service"] == "cm")
    assert {v: r["accepted"] for v, r in cm["versions"].items()} == {"1.0": False, "1.1": False, "1.2": False,
                                                                     "1.3": True}
    proxy = next(e for e in endpoints if e["service"] == "proxy")
    assert proxy["tls12_ciphers"] == ["ECDHE-ECDSA-AES256-GCM-SHA384"] and proxy["ciphers_tried"] > 10
    # A second apply has nothing to change.
    code, out = _run("apply", "sim", "-c", str(tmp_path / "inv.yaml"))
    assert code == 0 and out["clusters"][0]["status"] == "unchanged" and len(sim.received_cluster_updates) == 2


def test_apply_on_a_legacy_cluster_uses_old_values_and_sentinel_ssl_policy(
    tmp_path: Path, ca_files: tuple[Path, Path]
) -> None:
    sim = _sim(tmp_path, "7.2.4-92")
    try:
        policy = {"min_control_tls": "1.1", "min_data_tls": 1.0, "sentinel_tls_mode": "disabled"}
        inventory = _inventory(tmp_path, sim, ca_files, policy)
        code, out = _run("apply", "sim", "-c", str(inventory))
        (report,) = out["clusters"]
        assert sim.received_cluster_updates[-1][1] == {"min_control_TLS_version": "1.1", "min_data_TLS_version": "1",
                                                       "sentinel_ssl_policy": "disabled"}
        assert code == 1 and report["status"] == "pending"  # the discovery service needs a restart
        assert any("supervisorctl restart sentinel_service" in n for n in report["notes"])
        accepted = {e["service"]: [v for v, r in e["versions"].items() if r["accepted"]]
                    for e in report["audit"]["endpoints"]}
        assert accepted["cm"] == ["1.1", "1.2", "1.3"] and accepted["proxy"] == ["1.0", "1.1", "1.2", "1.3"]
        assert {d["plane"] for d in report["audit"]["drift"]} == {"sentinel"}
        sim.restart_sentinel()
        code, out = _run("audit", "sim", "-c", str(inventory), "--no-ciphers")
        assert code == 0, out
        assert "sentinel_tls_mode" not in out["clusters"][0]["api"]  # RS before 7.4.2 has only the old name
    finally:
        sim.stop()


@pytest.mark.parametrize(("version", "policy", "needle"), [
    ("7.22.2-14", {"min_data_tls": "1.1"}, "accepts only 1.2, 1.3"),
    ("7.2.4-92", {"min_data_tls": "1.3"}, "accepts only 1.0, 1.1, 1.2"),
    ("7.22.2-14", {"control_cipher_suites": RSA_ONLY}, "cm: an ECDSA key"),
])
def test_values_the_cluster_cannot_take_are_refused_before_any_call(
    tmp_path: Path, ca_files: tuple[Path, Path], version: str, policy: dict, needle: str
) -> None:
    sim = _sim(tmp_path, version)
    try:
        before = sim.cluster_settings()
        code, out = _run("apply", "sim", "-c", str(_inventory(tmp_path, sim, ca_files, policy)))
        (report,) = out["clusters"]
        assert code == 2 and report["status"] == "refused"
        assert any(needle in e for e in report["errors"]), report["errors"]
        assert sim.received_cluster_updates == [] and sim.cluster_settings() == before
    finally:
        sim.stop()


def test_dry_run_changes_nothing(tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path]) -> None:
    inventory = _inventory(tmp_path, sim, ca_files, {"min_control_tls": "1.3", "sentinel_tls_mode": "required"})
    before = sim.cluster_settings()
    code, out = _run("apply", "sim", "--dry-run", "-c", str(inventory))
    (report,) = out["clusters"]
    assert code == 0 and report["status"] == "dry_run" and report["audit"] is None
    assert report["response"] == {"min_control_TLS_version": "1.3", "sentinel_tls_mode": "required"}
    assert [dry for dry, _ in sim.received_cluster_updates] == [True]
    assert sim.cluster_settings() == before
    code, out = _run("audit", "sim", "-c", str(inventory), "--no-ciphers")
    assert code == 1 and {d["kind"] for d in out["clusters"][0]["drift"]} == {"config"}
    cm = next(e for e in out["clusters"][0]["endpoints"] if e["service"] == "cm")
    assert cm["versions"]["1.2"]["accepted"] is True  # still 1.2 on the wire


def test_audit_command_table_and_exit_codes(tmp_path: Path, sim: ClusterSimulator,
                                           ca_files: tuple[Path, Path]) -> None:
    inventory = _inventory(tmp_path, sim, ca_files, {"min_control_tls": "1.2"})
    result = runner.invoke(app, ["policy", "audit", "-c", str(inventory), "--no-ciphers"])
    assert result.exit_code == 0 and "compliant" in result.stdout and "discovery" in result.stdout
    sim.override_node_tls(1, "api", min_version="1.1")
    result = runner.invoke(app, ["policy", "audit", "sim", "-c", str(inventory), "--no-ciphers"])
    assert result.exit_code == 1 and "accepts TLS 1.1" in result.stdout
    result = runner.invoke(app, ["policy", "audit", "nope", "-c", str(inventory)])
    assert result.exit_code == 2


# --- the simulator's PUT /v1/cluster ---------------------------------------------------------
@pytest.mark.parametrize(("body", "code"), [
    ({"min_control_TLS_version": "1.1"}, "invalid_tls_version"),
    ({"min_data_TLS_version": "1"}, "invalid_tls_version"),
    ({"sentinel_ssl_policy": "required"}, "invalid_field"),
    ({"control_cipher_suites_tls_1_3": "TLS_AES_128_GCM_SHA256"}, "read_only_field"),
    ({"data_cipher_list": "NOPE"}, "invalid_cipher_list"),
    ({"sentinel_tls_mode": "sometimes"}, "invalid_value"),
    ({"colour": "blue"}, "invalid_field"),
])
def test_simulator_put_cluster_refuses_bad_values(sim: ClusterSimulator, body: dict, code: str) -> None:
    before = sim.cluster_settings()
    answer = _put(sim, {"min_control_TLS_version": "1.3", **body})
    assert answer.status_code == 400 and answer.json()["error_code"] == code
    assert sim.cluster_settings() == before  # all or nothing


def test_simulator_put_cluster_dry_run_and_apply(sim: ClusterSimulator) -> None:
    answer = _put(sim, {"sentinel_tls_mode": "required", "min_data_TLS_version": "1.3"}, "?dry_run=1")
    assert answer.status_code == 200 and answer.json()["sentinel_ssl_policy"] == "required"
    assert sim.cluster_settings()["min_data_TLS_version"] == "1.2"
    answer = _put(sim, {"sentinel_tls_mode": "required"})
    assert answer.json()["sentinel_tls_mode"] == answer.json()["sentinel_ssl_policy"] == "required"
    with httpx.Client(verify=False) as client:  # noqa: S501 - loopback simulator
        viewer = client.put(f"https://{sim.node_addresses[0]}:9443/v1/cluster", json={"http_support": True},
                            auth=(sim.viewer_username, sim.viewer_password))
    assert viewer.status_code == 403


# --- certificates and ciphers together -------------------------------------------------------
def test_rotation_refuses_an_ecdsa_key_when_only_rsa_suites_are_configured(
    tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path], state_dir: Path
) -> None:
    assert _put(sim, {"control_cipher_suites": RSA_ONLY}).status_code == 200
    path = _inventory(tmp_path, sim, ca_files, None)
    (record,) = rotate_here(load_inventory(path), "sim", ["cm"], RotationOptions(poll_interval=0.1))
    assert record.outcome is Outcome.REFUSED
    assert "cm: an ECDSA key cannot be used with control_cipher_suites" in (record.error or "")
    assert not sim.received_update_bodies  # nothing pushed

    path = _inventory(tmp_path, sim, ca_files, None, certificates={"cm": {"key_type": "rsa-2048"}, "proxy": {}})
    (record,) = rotate_here(load_inventory(path), "sim", ["cm"], RotationOptions(poll_interval=0.1))
    assert record.outcome is Outcome.VERIFIED, record.error
    # The ECDSA proxy is still fine: data_cipher_list was not restricted.
    (record,) = rotate_here(load_inventory(path), "sim", ["proxy"], RotationOptions(poll_interval=0.1))
    assert record.outcome is Outcome.VERIFIED, record.error
