"""Every certificate the cluster holds: `check` lists the unmanaged ones with days left and warns about a
customer internode certificate near RS's silent fallback; the scan stores that warning for `status` and the
metrics and notifies it once; ``ldap_client`` rotates through the bulk PUT only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from support.cluster import start_simulator, write_inventory
from support.rotate import rotate_here
from typer.testing import CliRunner

from rotation.adapters.metrics import registry_for
from rotation.config import Inventory, load_inventory
from rotation.core import certs
from rotation.core.model import Outcome, RotationRecord
from rotation.simulator import ClusterSimulator
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate.run import RotationOptions
from rotation.usecases.scan import scan_and_queue, scan_cluster
from rotation.usecases.status import service_status
from workers.main import app

HEALTH_VERSION = "8.0.16-30"  # customer INE certificates and GET /v4/cluster/health


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ClusterSimulator]:
    simulator = start_simulator(tmp_path, version=HEALTH_VERSION, internode_certs=True, expires_in=timedelta(days=200),
                                extra_certificates=("ldap_client", "gizmo_2027"))
    try:
        yield simulator
    finally:
        simulator.stop()


def inventory_for(tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path], **cluster: object) -> Path:
    path = write_inventory(tmp_path / "rotation.yaml", sim, ca_files, cluster_overrides=cluster)
    return path


class NothingDue:
    """The scan's queue when nothing is due: any submission fails the test."""

    def submit(self, cluster: str, cert_name: str, **options: object) -> str:
        raise AssertionError(f"{cluster}/{cert_name} queued, but nothing is due")

    def current(self, cluster: str, cert_name: str) -> str | None:
        return None


def test_check_lists_unmanaged_certificates_and_warns_before_the_internode_fallback(
    tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path], state_dir: Path,
) -> None:
    path = inventory_for(tmp_path, sim, ca_files)
    result = CliRunner().invoke(app, ["check", "-c", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    unmanaged = {row["cert"]: row for row in report["rows"] if row["status"] == "unmanaged"}
    assert set(unmanaged) == {"ldap_client", "gizmo_2027", "ccs_internode_encryption", "data_internode_encryption"}
    assert all(float(row["days_left"]) > 80 for row in unmanaged.values())
    assert report["warnings"] == []  # the health report agrees with the handshakes

    # a customer INE certificate 10 days from expiry: 5 days from RS's silent fallback
    sim.plant_certificate("ccs_internode_encryption", days=10, key_type="rsa")
    result = CliRunner().invoke(app, ["check", "-c", str(path), "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    (warning,) = report["warnings"]
    assert warning.startswith("sim/ccs_internode_encryption: expires ") and "5 days before expiry" in warning
    rows = {row["cert"]: row for row in report["rows"] if row["node"] == "api" and row["cert"].endswith("encryption")}
    assert rows["ccs_internode_encryption"]["status"] == "warning"
    text = CliRunner().invoke(app, ["check", "-c", str(path)])
    assert text.exit_code == 1 and "RS silently swaps in a self-signed" in " ".join(text.output.split())

    inventory = load_inventory(path)
    notified: list[str] = []
    with ServiceContext(inventory=lambda: inventory) as ctx:
        (new,) = scan_cluster(ctx, "sim").new_warnings
        assert new.startswith("sim/ccs_internode_encryption: expires ")
        status = service_status(ctx)
        assert len(status["scan_warnings"]["sim"]) == 1
        assert 'rotation_scan_warnings{cluster="sim"} 1.0' in generate_latest(registry_for(ctx.state)).decode()
        scan_and_queue(ctx, "sim", NothingDue(), notify=notified.append)  # type: ignore[arg-type]
    assert notified == []  # the first scan already had it: told once, not on every scan
    status_text = CliRunner().invoke(app, ["status", "-c", str(path)])
    assert "ccs_internode_encryption" in status_text.output and "warning" in status_text.output


def test_a_new_warning_is_notified_once(tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path],
                                        state_dir: Path) -> None:
    inventory = load_inventory(inventory_for(tmp_path, sim, ca_files))
    notified: list[str] = []
    with ServiceContext(inventory=lambda: inventory) as ctx:
        scan_and_queue(ctx, "sim", NothingDue(), notify=notified.append)  # type: ignore[arg-type]
        assert notified == []
        sim.plant_certificate("data_internode_encryption", days=8, key_type="rsa")
        for _ in range(2):
            scan_and_queue(ctx, "sim", NothingDue(), notify=notified.append)  # type: ignore[arg-type]
    assert len(notified) == 1 and notified[0].startswith("sim/data_internode_encryption: expires")


def test_before_the_health_report_the_scan_reads_the_cluster_copy(tmp_path: Path, ca_files: tuple[Path, Path],
                                                                   state_dir: Path) -> None:
    old = start_simulator(tmp_path, version="8.0.2-17", internode_certs=True, expires_in=timedelta(days=200))
    try:
        old.plant_certificate("ccs_internode_encryption", days=6, key_type="rsa")
        inventory = load_inventory(inventory_for(tmp_path, old, ca_files))
        with ServiceContext(inventory=lambda: inventory) as ctx:
            (warning,) = scan_cluster(ctx, "sim").new_warnings
    finally:
        old.stop()
    assert warning.startswith("sim/ccs_internode_encryption: expires") and "5 days before expiry" in warning


def rotate(inventory: Inventory, name: str) -> RotationRecord:
    (record,) = rotate_here(inventory, "sim", [name], RotationOptions(poll_interval=0.05))
    return record


def test_ldap_client_rotates_through_the_bulk_put(tmp_path: Path, sim: ClusterSimulator,
                                                  ca_files: tuple[Path, Path], state_dir: Path) -> None:
    inventory = load_inventory(inventory_for(tmp_path, sim, ca_files, ldap_client={}))
    before = len(sim.state.received_update_bodies)
    record = rotate(inventory, "ldap_client")
    assert record.outcome is Outcome.VERIFIED, record.error
    push = next(step for step in record.steps if step.name == "push")
    assert "via /v1/cluster/certificates" in push.detail
    body = json.loads(sim.state.received_update_bodies[-1])
    assert [item["name"] for item in body["certificates"]] == ["ldap_client"]
    assert len(sim.state.received_update_bodies) == before + 1
    leaf = certs.load_certificates(sim.cluster_cert_pem("ldap_client"), where="sim")[0]
    assert certs.fingerprint(leaf) == record.new_fingerprint
    assert certs.extended_key_usages(leaf) == {"clientAuth"}  # a client certificate
    # managed now: no longer an unmanaged row
    result = CliRunner().invoke(app, ["check", "-c", str(inventory.source), "--json"])
    rows = [row for row in json.loads(result.stdout)["rows"] if row["cert"] == "ldap_client"]
    assert [row["status"] for row in rows] == ["ok"]


def test_ldap_client_rotates_through_update_cert_before_the_bulk_put_exists(
        tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path) -> None:
    """``ldap_client`` is a valid name of ``PUT /v1/cluster/update_cert`` (RS 7.4 lists it; sheet
    redis-enterprise-api.md §1.1), the only update path before 7.22.2. Only from 7.22.2 must it go through the
    bulk PUT (RS193156). The rotation was refused on every cluster before 7.22.2."""
    old = start_simulator(tmp_path, version="7.22.0-28", extra_certificates=("ldap_client",))
    try:
        inventory = load_inventory(inventory_for(tmp_path, old, ca_files, ldap_client={}))
        record = rotate(inventory, "ldap_client")
        assert record.outcome is Outcome.VERIFIED, record.error
        push = next(step for step in record.steps if step.name == "push")
        assert "via /v1/cluster/update_cert" in push.detail
        assert json.loads(old.state.received_update_bodies[-1])["name"] == "ldap_client"
        leaf = certs.load_certificates(old.cluster_cert_pem("ldap_client"), where="sim")[0]
        assert certs.fingerprint(leaf) == record.new_fingerprint
    finally:
        old.stop()


def test_held_certificates_that_cannot_be_read_are_a_warning_not_a_failed_scan(
        tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path) -> None:
    old = start_simulator(tmp_path, version="8.0.2-17", expires_in=timedelta(days=200))
    try:
        inventory = load_inventory(inventory_for(tmp_path, old, ca_files))
        old.fail_requests(5, 503, method="GET", path="/v1/cluster/certificates")
        with ServiceContext(inventory=lambda: inventory) as ctx:
            result = scan_cluster(ctx, "sim")
            scans = ctx.state.scans()
    finally:
        old.stop()
    assert result.states and all(state.served for state in result.states)  # the managed ones were judged
    assert any("GET /v1/cluster/certificates) not read" in warning for warning in result.warnings)
    assert "last_failure" not in scans.get("sim", {}), scans  # a failed scan records its failure
