"""Real handshakes: the audit against a TLS-1.0-only server and against the simulator's listeners."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support.cluster import start_simulator, write_inventory

from rotation.adapters.cluster import open_cluster
from rotation.adapters.tls.audit import AuditOptions, audit_many, self_test
from rotation.config import load_inventory
from rotation.core.tls_drift import AuditTarget, EndpointTLS
from rotation.simulator import ClusterSimulator, Database
from rotation.usecases.tls_audit import AuditReport, audit_cluster, audit_clusters

ONE_DB = [Database(1, "db1", 12000, True, "all-nodes")]
AES128, AES256 = "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384"


# --- the probe can really offer TLS 1.0 --------------------------------------------------------
def _tls10_only_server(tmp_path: Path) -> ssl.SSLContext:
    """Independent of the project's code: min = max = TLSv1, security level 0."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tls10.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    pem = tmp_path / "tls10.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.load_cert_chain(pem)
    return context


def test_audit_sees_a_tls10_only_server_as_exactly_that(tmp_path: Path) -> None:
    server_context = _tls10_only_server(tmp_path)

    async def scenario() -> tuple[EndpointTLS, bool]:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        target = AuditTarget("control", "legacy", "1", "127.0.0.1", port)
        try:
            (seen,) = await audit_many([target], AuditOptions(timeout=3, self_test=False))
            # A default client (security level 2, TLS >= 1.2) cannot even try: that is why SECLEVEL=0.
            try:
                await asyncio.open_connection("127.0.0.1", port, ssl=ssl.create_default_context())
                default_client_ok = True
            except (ssl.SSLError, OSError):
                default_client_ok = False
            return seen, default_client_ok
        finally:
            server.close()
            await server.wait_closed()

    seen, default_client_ok = asyncio.run(scenario())
    versions = {p.version: p.accepted for p in seen.versions}
    assert versions == {"1.0": True, "1.1": False, "1.2": False, "1.3": False}
    assert seen.versions[0].cipher and seen.key_type == "ecdsa" and seen.error is None
    assert seen.tls12_ciphers is None  # no TLS 1.2, nothing to scan
    assert not default_client_ok
    assert asyncio.run(self_test(timeout=3)) is True


def test_a_closed_port_is_unreachable_not_refused() -> None:
    (seen,) = asyncio.run(audit_many([AuditTarget("control", "cm", "1", "127.0.0.1", 9)],
                                     AuditOptions(timeout=2, self_test=False)))
    assert seen.error and "unreachable" in seen.error
    assert all(p.accepted is None for p in seen.versions)


# --- the simulator ----------------------------------------------------------------------------
@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ClusterSimulator]:
    simulator = start_simulator(tmp_path, nodes=2, databases=ONE_DB)
    try:
        yield simulator
    finally:
        simulator.stop()


def _inventory(tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path], policy: dict | None = None):
    overrides = {"tls_policy": policy} if policy else {}
    return load_inventory(write_inventory(tmp_path / "inv.yaml", sim, ca_files, cluster_overrides=overrides))


def _row(report: AuditReport, service: str, node: str) -> EndpointTLS:
    return next(e for e in report.endpoints if e.target.service == service and e.target.node == node)


def test_default_cluster_is_compliant_on_every_listener(
    tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path]
) -> None:
    report = audit_cluster(_inventory(tmp_path, sim, ca_files, {"min_control_tls": "1.2"}), "sim")
    assert report.exit_code == 0, [d.message for d in report.drift] + report.errors
    services = sorted({(e.target.service, e.target.port) for e in report.endpoints})
    assert services == [("api", 9443), ("cm", 8443), ("discovery", 8001), ("metrics_exporter", 8070),
                        ("proxy", 12000)]
    assert len(report.endpoints) == 10  # 5 listeners x 2 nodes
    for endpoint in report.endpoints:
        assert endpoint.accepted() == ["1.2", "1.3"], endpoint.target.label
        assert endpoint.tls12_ciphers and endpoint.ciphers_tried >= len(endpoint.tls12_ciphers)
    assert _row(report, "discovery", "1").plaintext is True  # sentinel_tls_mode allowed


def test_the_audit_tells_its_progress_handshake_by_handshake(
    tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path]
) -> None:
    told: list[tuple[int, int]] = []
    (report,) = audit_clusters(_inventory(tmp_path, sim, ca_files), ["sim"], scan_ciphers=False,
                               progress=lambda done, total: told.append((done, total)))
    # 10 endpoints x 4 versions + a plaintext try on each of the 2 discovery endpoints, each one counted
    assert len(report.endpoints) == 10 and told[-1] == (42, 42)
    assert [done for done, _ in told] == sorted(done for done, _ in told)


def test_audit_finds_a_planted_drift(tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path]) -> None:
    inventory = _inventory(tmp_path, sim, ca_files, {"min_control_tls": "1.2"})
    sim.override_node_tls(2, "cm", min_version="1.1")  # the API still says 1.2
    report = audit_cluster(inventory, "sim", scan_ciphers=False)
    assert report.exit_code == 1
    (drift,) = report.drift
    assert drift.kind == "enforcement" and drift.where.startswith("cm@node2")
    assert drift.message == "accepts TLS 1.1 although min_control_TLS_version is 1.2"
    assert _row(report, "cm", "2").accepted() == ["1.1", "1.2", "1.3"]
    assert _row(report, "cm", "1").accepted() == ["1.2", "1.3"]
    assert report.to_dict()["drift"][0]["where"].startswith("cm@node2")
    assert "1 TLS policy drift(s)" in report.summary() and "accepts TLS 1.1" in report.summary()
    sim.clear_faults()
    assert audit_cluster(inventory, "sim", scan_ciphers=False).exit_code == 0


def test_cipher_enforcement_is_seen_by_handshakes(
    tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path]
) -> None:
    inventory = _inventory(tmp_path, sim, ca_files)
    with open_cluster(inventory, "sim") as session:
        session.client.update_cluster({"data_cipher_list": f"{AES128}:{AES256}"})
    report = audit_cluster(inventory, "sim")
    assert report.exit_code == 0, [d.message for d in report.drift]
    assert _row(report, "proxy", "1").tls12_ciphers == (AES128, AES256)
    assert len(_row(report, "cm", "1").tls12_ciphers or ()) > 2  # control list untouched

    sim.override_node_tls(1, "proxy", ciphers="ECDHE-ECDSA-AES128-SHA")  # a suite the list does not allow
    report = audit_cluster(inventory, "sim")
    assert _row(report, "proxy", "1").tls12_ciphers == ("ECDHE-ECDSA-AES128-SHA",)
    assert [d.message for d in report.drift] == ["accepts ECDHE-ECDSA-AES128-SHA, which data_cipher_list "
                                                 "does not allow"]


def test_sentinel_changes_wait_for_a_restart(tmp_path: Path, sim: ClusterSimulator,
                                            ca_files: tuple[Path, Path]) -> None:
    inventory = _inventory(tmp_path, sim, ca_files)
    with open_cluster(inventory, "sim") as session:
        session.client.update_cluster({"sentinel_tls_mode": "disabled"})
    report = audit_cluster(inventory, "sim", scan_ciphers=False)
    assert {d.where.split()[0] for d in report.drift} == {"discovery@node1", "discovery@node2"}
    assert all("restart sentinel_service" in d.hint for d in report.drift)
    sim.restart_sentinel(1)
    report = audit_cluster(inventory, "sim", scan_ciphers=False)
    assert {d.where.split()[0] for d in report.drift} == {"discovery@node2"}
    assert _row(report, "discovery", "1").accepted() == [] and _row(report, "discovery", "1").plaintext is True
    sim.restart_sentinel()
    assert audit_cluster(inventory, "sim", scan_ciphers=False).exit_code == 0


def test_unreachable_node_is_an_error(tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path]) -> None:
    inventory = _inventory(tmp_path, sim, ca_files)
    sim.node_down(2)
    report = audit_cluster(inventory, "sim", scan_ciphers=False)
    assert report.exit_code == 2
    assert all("node2" in e for e in report.errors) and len(report.errors) == 5
    sim.node_down(2, down=False)
