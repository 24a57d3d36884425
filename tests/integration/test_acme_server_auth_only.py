"""Certificates from today's public CAs: an ACME CA issuing what Let's Encrypt's ``tlsserver`` profile issues
(serverAuth only, no CN, no keyEncipherment) through real Pebble, a real HTTPS front and the simulator.

Server slots rotate and verify with them (what they miss of RS's documented profile is a warning on the
record); ``syncer`` routed to that CA is refused before any order; ``strict_profile: true`` refuses the same
certificates before any push."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from support.acme import TSIG_NAME, ZONE, NamedServer
from support.acme_profile import TLSServerProfileCA, tlsserver_ca  # noqa: F401 - the fixture
from support.cluster import write_inventory
from support.rotate import rotate_here
from typer.testing import CliRunner

from rotation.config import load_inventory
from rotation.core import certs
from rotation.core.errors import ConfigError
from rotation.core.model import Outcome, RotationRecord
from rotation.simulator import ClusterSimulator
from rotation.usecases.rotate.run import RotationOptions
from workers.main import app

HOSTS = [ZONE, f"*.{ZONE}"]


def write(tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path], named: NamedServer,  # noqa: F811
          ca: TLSServerProfileCA, certificates: dict, **cluster: object) -> Path:
    path = write_inventory(tmp_path / "rotation.yaml", sim, ca_files)
    data = yaml.safe_load(path.read_text())
    (tmp_path / "tsig.secret").write_text(named.tsig_secret)
    data["issuers"]["le"] = {
        "type": "acme", "directory": ca.directory_url, "email": "ops@example.com", "profile": "tlsserver",
        "ca_bundle": str(ca.ca_bundle), "trust_roots": str(ca.root_file), "order_timeout": "30s",
        "client_auth": cluster.pop("client_auth", False),
        "dns": {"provider": "rfc2136", "server": named.address, "tsig_key_name": TSIG_NAME,
                "tsig_secret_file": "tsig.secret", "propagation_servers": [named.address],
                "propagation_timeout": "10s"},
    }
    data["clusters"]["sim"].update({"issuer": "le", "certificates": certificates, **cluster})
    path.write_text(yaml.safe_dump(data))
    return path


def rotate(path: Path, cert: str) -> RotationRecord:
    (record,) = rotate_here(load_inventory(path), "sim", [cert], RotationOptions(poll_interval=0.1))
    return record


def test_server_slots_rotate_with_server_auth_only_cn_less_certificates(
    tmp_path: Path, simulator: ClusterSimulator, ca_files: tuple[Path, Path], state_dir: Path,
    named: NamedServer, tlsserver_ca: TLSServerProfileCA,  # noqa: F811
) -> None:
    path = write(tmp_path, simulator, ca_files, named, tlsserver_ca,
                 {"proxy": {"key_type": "rsa-2048"}, "cm": None, "api": None, "syncer": {"issuer": "internal"}})
    for cert in ("proxy", "cm", "api"):
        record = rotate(path, cert)
        assert record.outcome is Outcome.VERIFIED, record.error
        leaf = certs.load_certificates(simulator.cluster_cert_pem(cert), where="sim")[0]
        assert certs.fingerprint(leaf) == record.new_fingerprint
        assert certs.common_name(leaf) is None
        assert certs.extended_key_usages(leaf) == {"serverAuth"}
        assert set(certs.subject_alt_names(leaf)) == set(HOSTS)
        # not refused: what it misses of RS's documented profile is on the record
        assert any("lacks clientAuth" in w for w in record.warnings), record.warnings
        assert any("no CN" in w for w in record.warnings)
    assert any("keyEncipherment" in w for w in rotate(path, "proxy").warnings)  # an RSA key without it
    assert len(tlsserver_ca.reissued) == 4
    assert all(ExtendedKeyUsageOID.CLIENT_AUTH not in leaf.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value for leaf in tlsserver_ca.reissued)
    # syncer comes from the internal CA, which still issues clientAuth
    assert rotate(path, "syncer").outcome is Outcome.VERIFIED
    shown = " ".join(CliRunner().invoke(app, ["history", "--cert", "cm"]).output.split())
    assert "sim/cm: warning: cm: not the documented RS profile: the subject has no CN" in shown
    shown = " ".join(CliRunner().invoke(app, ["status", "-c", str(path)]).output.split())
    assert "sim/proxy: warning: proxy: not the documented RS profile: extendedKeyUsage lacks clientAuth" in shown
    result = CliRunner().invoke(app, ["config", "check", "-c", str(path), "--json"])
    assert result.exit_code == 0, result.output
    found = {f["where"]: f for f in json.loads(result.stdout)["findings"]}
    assert found["clusters.sim.proxy"]["message"] == "issuer 'le' can issue it (clientAuth: no, at most 25 names)"
    assert found["issuers.le"]["severity"] == "ok"  # the directory answers through the front


def test_syncer_routed_to_the_server_only_ca_is_refused_before_any_order(
    tmp_path: Path, simulator: ClusterSimulator, ca_files: tuple[Path, Path], state_dir: Path,
    named: NamedServer, tlsserver_ca: TLSServerProfileCA,  # noqa: F811
) -> None:
    path = write(tmp_path, simulator, ca_files, named, tlsserver_ca, {"proxy": None, "syncer": None})
    orders = len(tlsserver_ca.orders)
    with pytest.raises(ConfigError) as info:
        load_inventory(path)
    assert "clusters.sim.issuer: sim/syncer is a client certificate" in info.value.message
    assert "issuer 'le' is an ACME CA that issues no clientAuth" in info.value.message
    assert "give `syncer` an `internal_ca` issuer" in info.value.message
    result = CliRunner().invoke(app, ["config", "check", "-c", str(path)])
    assert result.exit_code == 2
    assert "give `syncer` an `internal_ca` issuer" in " ".join(result.output.split())
    result = CliRunner().invoke(app, ["rotate", "sim", "syncer", "-c", str(path), "--inline"])
    assert result.exit_code == 2
    assert len(tlsserver_ca.orders) == orders  # no order was placed


def test_strict_profile_refuses_the_same_certificates_before_any_push(
    tmp_path: Path, simulator: ClusterSimulator, ca_files: tuple[Path, Path], state_dir: Path,
    named: NamedServer, tlsserver_ca: TLSServerProfileCA,  # noqa: F811
) -> None:
    # The issuer claims clientAuth (a wrong declaration): the plan loads, the certificate proves otherwise.
    path = write(tmp_path, simulator, ca_files, named, tlsserver_ca, {"proxy": None, "cm": None},
                 strict_profile=True, client_auth=True)
    before = {cert: simulator.cluster_cert_pem(cert) for cert in ("proxy", "cm")}
    updates = len(simulator.state.received_update_bodies)
    for cert in ("proxy", "cm"):
        record = rotate(path, cert)
        assert record.outcome is Outcome.REFUSED, record.outcome
        assert record.error and "strict_profile: extendedKeyUsage lacks clientAuth" in record.error
        assert "strict_profile: the subject has no CN" in record.error
        assert simulator.cluster_cert_pem(cert) == before[cert]
    assert len(simulator.state.received_update_bodies) == updates  # nothing was pushed


def test_a_cluster_that_enforces_the_documented_profile_refuses_them_and_stays_unchanged(
    tmp_path: Path, simulator: ClusterSimulator, ca_files: tuple[Path, Path], state_dir: Path,
    named: NamedServer, tlsserver_ca: TLSServerProfileCA,  # noqa: F811
) -> None:
    """Without strict_profile the tool pushes; an RS that enforces what it documents answers 400, and the
    cluster keeps its certificate (the reason to turn strict_profile on for such clusters)."""
    simulator.set_options(cert_profile="as-documented")
    path = write(tmp_path, simulator, ca_files, named, tlsserver_ca, {"proxy": None})
    before = simulator.cluster_cert_pem("proxy")
    record = rotate(path, "proxy")
    assert record.outcome is not Outcome.VERIFIED
    assert record.error and "certificate_requirements_not_met" in record.error, record.error
    assert simulator.cluster_cert_pem("proxy") == before
