"""The tool's own client certificate (``rest_client``) on a cluster with Basic off: renewed make before
break (proven on every node, then the files switch), the client CA rotated with mtls_trusted_ca (union
first, old CA removed once proven), and every way it could lock itself out refused with nothing changed."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from support.cert_login import SUBJECT, ca_files, logs_in, managed_inventory
from support.cluster import start_simulator
from support.rest import Rest
from support.rotate import rotate_here
from typer.testing import CliRunner

from rotation.adapters.issuers.internal_ca import init_ca
from rotation.config import Inventory, load_inventory
from rotation.core import certs
from rotation.core.model import Outcome, RotationRecord
from rotation.simulator import ClusterSimulator
from rotation.usecases.check import check_clusters
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate.run import RotationOptions
from rotation.usecases.scan import scan_cluster
from workers.main import app


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ClusterSimulator]:
    simulator = start_simulator(tmp_path, version="8.2.0-46")
    simulator.cert_login.enable(SUBJECT, basic=False)
    yield simulator
    simulator.stop()


@pytest.fixture
def client_ca(sim: ClusterSimulator, tmp_path: Path) -> tuple[Path, Path]:
    assert sim.accounts.client_ca is not None
    return ca_files(sim.accounts.client_ca, tmp_path / "client-ca")


def rotate(inventory: Inventory) -> RotationRecord:
    options = RotationOptions(poll_interval=0.05, push_backoff=0.05, verify_deadline=timedelta(seconds=3))
    (record,) = rotate_here(inventory, "sim", ["rest_client"], options)
    return record


def fingerprint(path: Path) -> str:
    return certs.fingerprint(certs.load_certificates(path.read_text(), where=str(path))[0])


def trusted_ca(sim: ClusterSimulator) -> str:
    """``mtls_trusted_ca`` as the REST API shows it, read with the client certificate the files hold now."""
    login = sim.cert_login.client
    assert login is not None
    rest = Rest(sim, cert=(login.cert_path, login.key_path), basic=None)
    return rest("GET", "/v1/cluster/certificates").json()["mtls_trusted_ca_cert"]


def test_the_tool_renews_its_own_client_certificate(sim: ClusterSimulator, ca_files: tuple[Path, Path],
                                                     client_ca: tuple[Path, Path], tmp_path: Path,
                                                     state_dir: Path) -> None:
    login = sim.cert_login.client
    assert login is not None
    inventory = load_inventory(managed_inventory(tmp_path / "inv.yaml", sim, ca_files, client_ca))
    before = fingerprint(login.cert_path)
    rows = {r["cert"]: r for r in check_clusters(inventory, ["sim"]).rows}
    assert rows["rest_client"]["fingerprint"] == before and rows["rest_client"]["node"] == "file"
    with ServiceContext(inventory=lambda: inventory) as ctx:  # beat's scan knows its expiry, from the file
        decision = scan_cluster(ctx, "sim").decisions["rest_client"]
        assert decision.verdict.not_after == certs.not_after(certs.load_certificates(
            login.cert_path.read_text(), where="file")[0]) and not decision.due
    record = rotate(inventory)
    assert record.outcome is Outcome.VERIFIED, record.error
    assert [s.name for s in record.steps] == ["read", "issue", "validate", "push", "verify"]
    assert record.old_fingerprint == before and fingerprint(login.cert_path) == record.new_fingerprint
    assert os.stat(login.key_path).st_mode & 0o777 == 0o600
    assert not list(login.cert_path.parent.glob("*.previous"))  # the old pair dropped once proven
    assert all(logs_in(sim, node, login.cert_path, login.key_path) for node in (1, 2, 3))
    assert f"rest_client@node3 {sim.node_addresses[2]}:9443" in record.nodes
    assert sim.received_update_bodies == [] and sim.received_cluster_updates == []  # nothing pushed to RS
    leaf = certs.load_certificates(login.cert_path.read_text(), where="new")[0]
    assert leaf.subject.rfc4514_string() == SUBJECT and certs.extended_key_usages(leaf) == {"clientAuth"}


def test_rotating_the_client_ca_pushes_the_union_first(sim: ClusterSimulator, ca_files: tuple[Path, Path],
                                                       client_ca: tuple[Path, Path], tmp_path: Path,
                                                       state_dir: Path) -> None:
    login = sim.cert_login.client
    assert login is not None
    old_ca = trusted_ca(sim)
    old = (tmp_path / "old-cert.pem", tmp_path / "old-key.pem")
    shutil.copy(login.cert_path, old[0])
    shutil.copy(login.key_path, old[1])
    new_ca = init_ca(tmp_path / "new-client-ca", common_name="next client CA")
    inventory = load_inventory(managed_inventory(tmp_path / "inv.yaml", sim, ca_files, new_ca,
                                                 manage_trusted_ca=True))
    record = rotate(inventory)
    assert record.outcome is Outcome.VERIFIED, record.error
    names = [s.name for s in record.steps]
    assert names == ["read", "issue", "validate", "plan", "prepare:client_ca", "push", "verify",
                     "follow_up:client_ca", "finalize:client_ca"]
    uploads = sim.received_update_bodies
    assert len(uploads) == 2 and b"mtls_trusted_ca" in uploads[0] and b"mtls_trusted_ca" in uploads[1]
    final = certs.load_certificates(trusted_ca(sim), where="mtls_trusted_ca")
    assert [certs.subject_text(c) for c in final] == ["CN=next client CA"]
    union = certs.load_certificates(json.loads(uploads[0])["certificates"][0]["certificate"], where="union")
    assert {certs.fingerprint(c) for c in union} == {certs.fingerprint(c) for c in final} | {
        certs.fingerprint(certs.load_certificates(old_ca, where="old")[0])}
    assert all(logs_in(sim, node, login.cert_path, login.key_path) for node in (1, 2, 3))
    assert not any(logs_in(sim, node, *old) for node in (1, 2, 3))  # the old CA is gone: the old pair no longer
    assert "removed" in next(s.detail for s in record.steps if s.name == "finalize:client_ca")


def test_a_certificate_the_cluster_would_not_accept_is_never_switched_to(
        sim: ClusterSimulator, ca_files: tuple[Path, Path], client_ca: tuple[Path, Path], tmp_path: Path,
        state_dir: Path) -> None:
    login = sim.cert_login.client
    assert login is not None
    before, bundle = fingerprint(login.cert_path), trusted_ca(sim)
    # a new client CA the cluster does not trust, and the tool may not add it: refused in validation
    new_ca = init_ca(tmp_path / "new-client-ca", common_name="next client CA")
    record = rotate(load_inventory(managed_inventory(tmp_path / "a.yaml", sim, ca_files, new_ca)))
    assert record.outcome is Outcome.REFUSED and "lock the tool out" in (record.error or "")
    # a subject no certificate user has: the proof on the nodes fails before the files switch
    other = managed_inventory(tmp_path / "b.yaml", sim, ca_files, client_ca)
    other.write_text(other.read_text().replace(SUBJECT, "CN=someone-else,O=rotation"))
    record = rotate(load_inventory(other))
    assert record.outcome is Outcome.REFUSED and "does not log in" in (record.error or "")
    assert "No certificate user has the subject CN=someone-else,O=rotation" in (record.error or "")
    assert fingerprint(login.cert_path) == before and trusted_ca(sim) == bundle
    assert sim.received_update_bodies == [] and not list(login.cert_path.parent.glob("*.previous"))


def test_config_check_says_whether_the_files_can_be_replaced(sim: ClusterSimulator, ca_files: tuple[Path, Path],
                                                             client_ca: tuple[Path, Path], tmp_path: Path) -> None:
    path = managed_inventory(tmp_path / "inv.yaml", sim, ca_files, client_ca)
    result = CliRunner().invoke(app, ["config", "check", "-c", str(path), "--json"])
    found = {f["where"]: f for f in json.loads(result.stdout)["findings"]}
    assert result.exit_code == 0 and found["clusters.sim.rest_client"]["severity"] == "ok", result.output
    path.write_text(path.read_text().replace(str(sim.cert_login.client.cert_path),  # type: ignore[union-attr]
                                             str(tmp_path / "missing" / "client.pem")))
    result = CliRunner().invoke(app, ["config", "check", "-c", str(path), "--offline", "--json"])
    found = {f["where"]: f for f in json.loads(result.stdout)["findings"]}
    assert result.exit_code == 2 and "missing: this user" in found["clusters.sim.rest_client"]["message"]


def test_a_union_whose_answer_never_came_is_put_back(sim: ClusterSimulator, ca_files: tuple[Path, Path],
                                                     client_ca: tuple[Path, Path], tmp_path: Path,
                                                     state_dir: Path) -> None:
    old_ca = trusted_ca(sim)
    new_ca = init_ca(tmp_path / "new-client-ca", common_name="next client CA")
    inventory = load_inventory(managed_inventory(tmp_path / "inv.yaml", sim, ca_files, new_ca,
                                                 manage_trusted_ca=True))
    sim.log_requests()
    sim.fail_requests(1, 400, method="PUT", path="/v1/cluster/certificates")  # refused: shows where it comes
    first = rotate(inventory)
    assert first.outcome is Outcome.REFUSED and trusted_ca(sim) == old_ca
    sim.fail_nth(sim.logged_requests().index("PUT /v1/cluster/certificates") + 1, "reset")  # applied, unanswered
    record = rotate(inventory)
    assert record.outcome is Outcome.REFUSED and not record.pushed, record.error
    assert trusted_ca(sim) == old_ca  # the union was in the record before it was sent: the CAs from before are back
    assert [c["undone"] for c in record.companions] == [True]
