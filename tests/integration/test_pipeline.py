"""The pipeline against a real simulated 3-node cluster: real TLS, real HTTPS, real CA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cluster import handshake_fingerprint, start_simulator, write_inventory
from support.rotate import rotate_here

from rotation.adapters.cluster import open_cluster
from rotation.config import Inventory, load_inventory
from rotation.core import certs
from rotation.core.model import CertName, Outcome, RotationRecord
from rotation.simulator import ClusterSimulator
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate.run import RotationOptions

SERVED = [CertName.CM, CertName.API, CertName.METRICS_EXPORTER, CertName.PROXY]


def rotate_one(inventory: Inventory, cert: str, **options: object) -> RotationRecord:
    opts = RotationOptions(poll_interval=0.1, push_backoff=0.05, **options)  # type: ignore[arg-type]
    (record,) = rotate_here(inventory, "sim", [cert], opts)
    return record


def served_everywhere(sim: ClusterSimulator, cert: CertName) -> set[str]:
    """Fingerprints seen by independent handshakes on every endpoint of ``cert``."""
    fqdn = "cluster.test.local"
    seen = set()
    for index, address in enumerate(sim.node_addresses, start=1):
        if cert is CertName.CM:
            seen.add(handshake_fingerprint(address, sim.config.cm_port, fqdn))
        elif cert is CertName.API:
            seen.add(handshake_fingerprint(address, sim.config.api_port, fqdn))
        elif cert is CertName.METRICS_EXPORTER:
            seen.add(handshake_fingerprint(address, sim.config.metrics_port, fqdn))
        elif cert is CertName.PROXY:
            seen.add(handshake_fingerprint(address, 12000, f"redis-12000.{fqdn}"))
            if index == 1:
                seen.add(handshake_fingerprint(address, 12001, f"redis-12001.{fqdn}"))
    return seen


@pytest.mark.parametrize("cert", list(CertName))
def test_rotation_of_each_certificate_is_verified_on_every_node(
    simulator: ClusterSimulator, inventory: Inventory, state_dir: Path, cert: CertName
) -> None:
    before = simulator.cluster_cert_pem(str(cert))
    record = rotate_one(inventory, str(cert))

    assert record.outcome is Outcome.VERIFIED, record.error
    assert record.new_fingerprint and record.new_fingerprint != record.old_fingerprint
    after_pem = simulator.cluster_cert_pem(str(cert))
    assert after_pem != before
    assert certs.fingerprint(certs.load_certificates(after_pem, where="sim")[0]) == record.new_fingerprint
    if cert.is_served:
        assert served_everywhere(simulator, cert) == {record.new_fingerprint}
        assert all(pair["after"] == record.new_fingerprint for pair in record.nodes.values())
    assert [s.name for s in record.steps] == ["read", "issue", "validate", "push", "verify"]
    assert ServiceContext().state.history("sim", str(cert))[0].id == record.id


def test_api_rotation_keeps_the_client_working(
    simulator: ClusterSimulator, inventory: Inventory, state_dir: Path
) -> None:
    with open_cluster(inventory, "sim") as session:
        from rotation.usecases.rotate.pipeline import rotate

        ctx = ServiceContext()
        record = rotate(inventory, session, "api", state=ctx.state, issuers=ctx.issuers,
                        options=RotationOptions(poll_interval=0.1))
        assert record.outcome is Outcome.VERIFIED, record.error
        # Same client, new connections: the REST API now presents a certificate from our CA.
        session.client.reconnect()
        assert len(session.client.nodes()) == 3
    # A new process with only the inventory trusts it too (the api issuer's CA is trusted).
    with open_cluster(load_inventory(inventory.source), "sim") as fresh:
        assert len(fresh.client.nodes()) == 3
        assert fresh.client.certificates()["api"].certificate == simulator.cluster_cert_pem("api")


@pytest.mark.parametrize(("version", "path"), [("7.22.2-14", "/v1/cluster/certificates"),
                                               ("7.22.0-95", "/v1/cluster/update_cert")])
def test_update_path_follows_the_cluster_version(
    tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path, version: str, path: str
) -> None:
    sim = start_simulator(tmp_path, version=version)
    try:
        inventory = load_inventory(write_inventory(tmp_path / "inv.yaml", sim, ca_files))
        record = rotate_one(inventory, "proxy")
        assert record.outcome is Outcome.VERIFIED, record.error
        push = next(s for s in record.steps if s.name == "push")
        assert push.detail == f"via {path}"
    finally:
        sim.stop()


def test_pem_travels_json_escaped_and_arrives_identical(
    simulator: ClusterSimulator, inventory: Inventory, state_dir: Path, tmp_path: Path, ca_files: tuple[Path, Path]
) -> None:
    from rotation.adapters.issuers.internal_ca import InternalCA
    from rotation.core.model import CertRequest, KeyType

    # An intermediate-issued chain, so the full chain (leaf + intermediate) must survive.
    issued = InternalCA("internal", ca_files[0], ca_files[1]).issue(
        CertRequest("sim", CertName.PROXY, ("cluster.test.local", "*.cluster.test.local"), KeyType.RSA_2048)
    )
    (tmp_path / "full.pem").write_text(issued.fullchain_pem)
    (tmp_path / "key.pem").write_text(issued.key_pem.reveal())
    from rotation.adapters.issuers.files import FileIssuer

    record = rotate_one(inventory, "proxy", issuer=FileIssuer("byo", tmp_path / "full.pem", tmp_path / "key.pem"),
                        trust=(ca_files[0].read_text(),))  # a bring-your-own chain needs an anchor
    assert record.outcome is Outcome.VERIFIED, record.error
    raw = simulator.received_update_bodies[-1]
    assert b"\\n" in raw and b"-----BEGIN CERTIFICATE-----\\n" in raw  # newlines escaped, not raw
    body = json.loads(raw)
    item = body["certificates"][0] if "certificates" in body else body
    assert item["certificate"] == issued.fullchain_pem
    assert certs.load_private_key(item["key"], where="body").private_numbers() == certs.load_private_key(
        issued.key_pem.reveal(), where="issued"
    ).private_numbers()


def test_dry_run_pushes_nothing(simulator: ClusterSimulator, inventory: Inventory, state_dir: Path) -> None:
    before = served_everywhere(simulator, CertName.PROXY)
    record = rotate_one(inventory, "proxy", dry_run=True)
    assert record.outcome is Outcome.DRY_RUN
    assert record.new_fingerprint
    assert served_everywhere(simulator, CertName.PROXY) == before
    assert not simulator.received_update_bodies


# Faults (409/5xx bursts, stale and down nodes, a slow API, ...) are in test_fault_matrix.py.
