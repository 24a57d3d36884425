"""Bad input: each gets a clear error naming what and where, nothing is pushed, the cluster is unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from support.certs import chain_with_intermediate, make_cert, with_duplicate_extension, write_pair
from support.cluster import write_inventory
from support.rotate import rotate_here

from rotation.adapters.issuers.files import FileIssuer
from rotation.config import Inventory, load_inventory
from rotation.core import certs
from rotation.core.errors import ConfigError
from rotation.core.model import CertName, Outcome
from rotation.simulator import ClusterSimulator
from rotation.usecases.rotate.run import RotationOptions

FQDN = "cluster.test.local"


def refused(simulator: ClusterSimulator, inventory: Inventory, issuer: FileIssuer) -> str:
    before = simulator.cluster_cert_pem("proxy")
    (record,) = rotate_here(inventory, "sim", ["proxy"], RotationOptions(issuer=issuer))
    assert record.outcome is Outcome.REFUSED, record
    assert "push" not in [s.name for s in record.steps]
    assert not simulator.received_update_bodies
    assert simulator.cluster_cert_pem("proxy") == before
    assert "PRIVATE KEY" not in (record.error or "")
    return record.error or ""


def test_malformed_pem(simulator: ClusterSimulator, inventory: Inventory, state_dir: Path, tmp_path: Path) -> None:
    _, key = chain_with_intermediate()
    error = refused(simulator, inventory, write_pair(tmp_path, ["-----BEGIN CERTIFICATE-----\nnot base64!\n"
                                                               "-----END CERTIFICATE-----\n"], key))
    assert "full.pem" in error


def test_key_that_does_not_match(simulator: ClusterSimulator, inventory: Inventory, state_dir: Path,
                                 tmp_path: Path) -> None:
    chain, _ = chain_with_intermediate()
    _, other_key = chain_with_intermediate()
    assert "match" in refused(simulator, inventory, write_pair(tmp_path, chain, other_key)).lower()


def test_expired_certificate(simulator: ClusterSimulator, inventory: Inventory, state_dir: Path,
                             tmp_path: Path) -> None:
    chain, key = chain_with_intermediate(days=(-30, -1))
    assert "expired" in refused(simulator, inventory, write_pair(tmp_path, chain, key)).lower()


def test_san_not_covering_the_host(simulator: ClusterSimulator, inventory: Inventory, state_dir: Path,
                                   tmp_path: Path) -> None:
    chain, key = chain_with_intermediate(hosts=("other.example.com",))
    error = refused(simulator, inventory, write_pair(tmp_path, chain, key))
    assert FQDN in error


def test_chain_out_of_order(simulator: ClusterSimulator, inventory: Inventory, state_dir: Path,
                            tmp_path: Path) -> None:
    chain, key = chain_with_intermediate()
    error = refused(simulator, inventory, write_pair(tmp_path, list(reversed(chain)), key))
    assert "order" in error.lower() or "match" in error.lower()


def test_unknown_certificate_name(inventory: Inventory, state_dir: Path) -> None:
    with pytest.raises(ConfigError, match="unknown certificate name 'ldap'"):
        rotate_here(inventory, "sim", ["ldap"], RotationOptions())


def test_unknown_cluster(inventory: Inventory, state_dir: Path) -> None:
    with pytest.raises(ConfigError, match="unknown cluster 'nope'"):
        rotate_here(inventory, "nope", ["proxy"], RotationOptions())


def test_wrong_password(simulator: ClusterSimulator, tmp_path: Path, ca_files: tuple[Path, Path],
                        state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WRONG_PW", "not-the-password")
    path = write_inventory(tmp_path / "inv.yaml", simulator, ca_files,
                           cluster_overrides={"password_env": "WRONG_PW", "password_file": None})
    (record,) = rotate_here(load_inventory(path), "sim", ["proxy"], RotationOptions())
    assert record.outcome is Outcome.REFUSED
    assert "refused the username or password (HTTP 401)" in (record.error or "")
    assert "not-the-password" not in (record.error or "")
    assert not simulator.received_update_bodies


def test_unreachable_cluster(simulator: ClusterSimulator, tmp_path: Path, ca_files: tuple[Path, Path],
                             state_dir: Path) -> None:
    path = write_inventory(tmp_path / "inv.yaml", simulator, ca_files,
                           cluster_overrides={"url": "https://127.0.0.1:1", "request_timeout": "2s"})
    (record,) = rotate_here(load_inventory(path), "sim", ["proxy"], RotationOptions())
    assert record.outcome is Outcome.REFUSED
    assert "cannot reach https://127.0.0.1:1" in (record.error or "")
    assert not simulator.received_update_bodies


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        ({"clusters": {"x": {"url": "http://a:9443", "username": "u", "password_env": "P", "fqdn": "a"}}},
         "clusters.x.url: must be an https:// URL"),
        ({"clusters": {"x": {"url": "https://a:9443", "username": "u", "fqdn": "a"}}},
         "set exactly one of password_env or password_file"),
        ({"clusters": {"x": {"url": "https://a:9443", "username": "u", "password_env": "P", "fqdn": "a",
                             "issuer": "missing"}}}, "unknown issuer 'missing'"),
        ({"renew_before": "soon"}, "renew_before"),
        ({"issuers": {"i": {"type": "vault"}}}, "issuers.i"),
        ({"clusters": {"x": {"url": "https://a:9443", "username": "u", "password_env": "P", "fqdn": "a",
                             "certificates": {"cm": {"key_type": "dsa"}}}}}, "clusters.x.certificates.cm.key_type"),
    ],
)
def test_config_errors_name_the_file_and_field(tmp_path: Path, mutation: dict, expected: str) -> None:
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(mutation))
    with pytest.raises(ConfigError) as info:
        load_inventory(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_config_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("clusters: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_inventory(path)


def test_syncer_is_never_probed_but_read_from_the_api(inventory: Inventory, state_dir: Path) -> None:
    from rotation.adapters.cluster import open_cluster

    with open_cluster(inventory, "sim") as session:
        assert session.endpoints(CertName.SYNCER) == []
        (served,) = session.served(CertName.SYNCER)
        assert served.ok and served.endpoint.node == "api"


def test_an_extension_twice_in_the_certificate(simulator: ClusterSimulator, inventory: Inventory, state_dir: Path,
                                               tmp_path: Path) -> None:
    # signed properly by its CA, but RFC 5280 forbids an extension twice and nothing can read its extensions
    root, root_key = make_cert(ca=True, cn="Test Root")
    leaf, leaf_key = make_cert(root_key, "Test Root")
    issuer = write_pair(tmp_path, [with_duplicate_extension(leaf, root_key)],
                        certs.private_key_to_pem(leaf_key).reveal())
    with pytest.raises(ConfigError, match="full.pem"):
        issuer.check()  # `rotation config check` says so before any rotation
    error = refused(simulator, inventory, issuer)
    assert "full.pem" in error and "2.5.29.19" in error


def test_a_der_certificate_file(simulator: ClusterSimulator, inventory: Inventory, state_dir: Path,
                                tmp_path: Path) -> None:
    chain, key = chain_with_intermediate()
    issuer = write_pair(tmp_path, [], key)
    leaf = certs.load_certificates(chain[0], where="leaf")[0]
    issuer.cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.DER))
    error = refused(simulator, inventory, issuer)
    assert f"{issuer.cert_file}: binary data, not PEM text (a DER or PKCS#12 file?)" in error


def test_a_chain_through_a_certificate_that_is_no_ca(simulator: ClusterSimulator, inventory: Inventory,
                                                     state_dir: Path, tmp_path: Path) -> None:
    root, root_key = make_cert(ca=True, cn="Test Root")
    inter, inter_key = make_cert(root_key, "Test Root", cn="Not A CA")  # a server certificate, CA=false
    leaf, leaf_key = make_cert(inter_key, "Not A CA")
    issuer = write_pair(tmp_path, [certs.cert_to_pem(leaf), certs.cert_to_pem(inter)],
                        certs.private_key_to_pem(leaf_key).reveal())
    error = refused(simulator, inventory, issuer)
    assert "certificate #2 (CN=Not A CA) is not a CA certificate (no basicConstraints CA=true)" in error
