"""Rotating ``proxy`` on a cluster that staples it: the simulator's real OCSP queries to a real responder.

The internal CA is an intermediate under the test root (as production CAs are), so the pushed chain
holds the issuer RS needs to build its OCSP request; the responder signs with that intermediate.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support.cluster import free_loopback_base, start_simulator, write_inventory
from support.ocsp_responder import OcspResponder
from support.rest import Rest
from support.rotate import rotate_here
from test_pipeline import served_everywhere
from typer.testing import CliRunner

from rotation.adapters.cluster import open_cluster
from rotation.cli.main import app
from rotation.config import Inventory, load_inventory
from rotation.core import certs
from rotation.core.errors import RotationError
from rotation.core.model import CertName, Outcome, RotationRecord
from rotation.core.ocsp import responder_urls
from rotation.core.validate import ParsedBundle
from rotation.simulator import ClusterSimulator
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate.companions import Applied, NoCompanion
from rotation.usecases.rotate.ocsp import OcspCompanion, ocsp_companion
from rotation.usecases.rotate.run import RotationOptions, Run


@dataclass
class Stapled:
    """A one-node cluster whose proxy certificate names the responder, with stapling on."""

    sim: ClusterSimulator
    responder: OcspResponder
    rest: Rest
    ca: tuple[Path, Path]  # the internal CA: intermediate + root, and the intermediate's key
    tmp: Path

    def inventory(self, *, ocsp_url: str | None = None, **cluster: Any) -> Inventory:
        return load_inventory(self.inventory_path(ocsp_url=ocsp_url, **cluster))

    def inventory_path(self, *, ocsp_url: str | None = None, **cluster: Any) -> Path:
        path = write_inventory(self.tmp / "rotation.yaml", self.sim, self.ca, cluster_overrides=cluster)
        data = yaml.safe_load(path.read_text())
        data["issuers"]["internal"].update({"ocsp_url": ocsp_url} if ocsp_url else {})
        path.write_text(yaml.safe_dump(data))
        return path

    def stapling(self) -> bool:
        return bool(self.rest("GET", "/v1/ocsp").json()["ocsp_functionality"])


def _intermediate(root: tuple[Path, Path], directory: Path) -> tuple[Path, Path, x509.Certificate, Any]:
    root_cert = certs.load_certificates(root[0].read_text(), where="ca.pem")[0]
    root_key = certs.load_private_key(root[1].read_bytes(), where="ca-key.pem")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Issuing CA")]))
            .issuer_name(root_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(root_key, certs.signing_hash_for(root_key)))  # type: ignore[arg-type]
    directory.mkdir()
    (directory / "issuing.pem").write_text(certs.cert_to_pem(cert) + root[0].read_text())
    (directory / "issuing-key.pem").write_text(certs.private_key_to_pem(key).reveal())
    return directory / "issuing.pem", directory / "issuing-key.pem", cert, key


@pytest.fixture
def stapled(tmp_path: Path, ca_files: tuple[Path, Path], state_dir: Path) -> Iterator[Stapled]:
    with OcspResponder(None, None, host=free_loopback_base(), default="good") as responder:
        # not due (60 days left, renew_before 30d): `check` exits 0 unless OCSP says otherwise
        sim = start_simulator(tmp_path, nodes=1, proxy_ocsp_url=responder.url, expires_in=dt.timedelta(days=60))
        try:
            responder.sign_with(sim.ca.cert, sim.ca.key)
            rest = Rest(sim)
            assert rest("PUT", "/v1/ocsp", json={"ocsp_functionality": True}).status_code == 200
            assert rest("GET", "/v1/ocsp/status").json()["cert_status"] == "GOOD"  # the first proxy is stapled
            issuing, issuing_key, cert, key = _intermediate(ca_files, tmp_path / "issuing")
            responder.sign_with(cert, key)  # from now on it answers for what the internal CA issues
            yield Stapled(sim, responder, rest, (issuing, issuing_key), tmp_path)
        finally:
            sim.stop()


def rotate_proxy(inventory: Inventory, *companions: NoCompanion) -> RotationRecord:
    options = RotationOptions(poll_interval=0.05, push_backoff=0.05, companions=companions)
    (record,) = rotate_here(inventory, "sim", ["proxy"], options)
    return record


def step(record: RotationRecord, name: str) -> str:
    return next(s.detail for s in record.steps if s.name == name)


def test_a_certificate_without_ocsp_url_is_refused_and_nothing_changes(stapled: Stapled) -> None:
    before, queries = served_everywhere(stapled.sim, CertName.PROXY), list(stapled.responder.requests)
    record = rotate_proxy(stapled.inventory())
    assert record.outcome is Outcome.REFUSED and not record.pushed
    assert "OCSP stapling is on" in (record.error or "") and "has no OCSP URL" in (record.error or "")
    assert "clusters.sim.ocsp: disable_when_missing" in (record.error or "")
    assert served_everywhere(stapled.sim, CertName.PROXY) == before
    assert stapled.stapling() and stapled.responder.requests == queries  # nothing asked, nothing switched


def test_opted_in_it_rotates_with_stapling_turned_off(stapled: Stapled) -> None:
    record = rotate_proxy(stapled.inventory(ocsp="disable_when_missing"))
    assert record.outcome is Outcome.VERIFIED, record.error
    assert served_everywhere(stapled.sim, CertName.PROXY) == {record.new_fingerprint}
    assert not stapled.stapling()
    assert any("OCSP stapling turned off" in warning for warning in record.warnings)
    names = [s.name for s in record.steps]
    assert names.index("prepare:ocsp") < names.index("push")  # off before the certificate it cannot staple
    assert "turn stapling off" in step(record, "plan")
    assert [(c["companion"], c["memo"]) for c in record.companions] == [("ocsp", {"action": "stapling_off"})]
    # stapling is off now; a redelivered attempt of an opted-in cluster still takes the companion, to undo
    for inventory, taken in ((stapled.inventory(ocsp="disable_when_missing"), True), (stapled.inventory(), False)):
        with open_cluster(inventory, "sim") as session:
            built = ocsp_companion(ServiceContext(inventory=lambda i=inventory: i), inventory, session, CertName.PROXY)
        assert isinstance(built, OcspCompanion) is taken


def test_an_internal_ca_certificate_with_ocsp_url_ends_good(stapled: Stapled) -> None:
    record = rotate_proxy(stapled.inventory(ocsp_url=stapled.responder.url))
    assert record.outcome is Outcome.VERIFIED, record.error
    leaf = certs.load_certificates(stapled.sim.cluster_cert_pem("proxy"), where="proxy")[0]
    assert certs.fingerprint(leaf) == record.new_fingerprint and responder_urls(leaf) == (stapled.responder.url,)
    assert stapled.responder.requests[-1] == leaf.serial_number  # RS asked about the new certificate
    assert "GOOD" in step(record, "follow_up:ocsp")
    names = [s.name for s in record.steps]
    assert names.index("verify") < names.index("follow_up:ocsp")
    assert stapled.stapling() and stapled.rest("GET", "/v1/ocsp/status").json()["cert_status"] == "GOOD"


def test_a_revoked_answer_rolls_back(stapled: Stapled) -> None:
    original = served_everywhere(stapled.sim, CertName.PROXY)
    stapled.responder.default = "revoked"
    record = rotate_proxy(stapled.inventory(ocsp_url=stapled.responder.url))
    assert record.outcome is Outcome.ROLLED_BACK
    assert "REVOKED" in (record.error or "") and record.pushed
    assert served_everywhere(stapled.sim, CertName.PROXY) == original  # verified by our own handshakes too
    assert "serve the previous certificate" in step(record, "verify-rollback")
    assert stapled.stapling()


class FailsAfterPush(NoCompanion):
    name = "peer"

    def follow_up(self, run: Run, bundle: ParsedBundle) -> Applied:
        raise RotationError("the peer refuses the new proxy")


def test_stapling_turned_off_comes_back_on_after_a_rollback(stapled: Stapled) -> None:
    original = served_everywhere(stapled.sim, CertName.PROXY)
    record = rotate_proxy(stapled.inventory(), OcspCompanion(disable_when_missing=True), FailsAfterPush())
    assert record.outcome is Outcome.ROLLED_BACK, record.error
    assert served_everywhere(stapled.sim, CertName.PROXY) == original
    assert stapled.stapling()  # the original certificate has an OCSP URL: RS takes stapling back
    assert record.companions[0]["undone"] is True and "turned on again" in step(record, "undo:ocsp")


def check(path: Path, *options: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["check", "-c", str(path), *options])
    return result.exit_code, result.stdout


def test_check_shows_the_proxys_ocsp_status(stapled: Stapled) -> None:
    path = stapled.inventory_path()
    code, out = check(path, "--json")
    (row,) = json.loads(out)["ocsp"]
    assert code == 0, out
    assert (row["cluster"], row["stapling"], row["cert_status"], row["responder_url"], row["problem"]) == (
        "sim", True, "GOOD", stapled.responder.url, None)
    code, out = check(path)
    assert code == 0 and "stapling on, last answer GOOD" in out
    proxy = certs.load_certificates(stapled.sim.cluster_cert_pem("proxy"), where="proxy")[0]
    stapled.responder.set_status(proxy, "revoked")
    stapled.responder.sign_with(stapled.sim.ca.cert, stapled.sim.ca.key)  # the simulator's CA issued that one
    assert stapled.rest("POST", "/v1/ocsp/test", json={}).json()["cert_status"] == "REVOKED"  # cached: stapling on
    code, out = check(path, "--json")
    (row,) = json.loads(out)["ocsp"]
    assert code == 1 and row["cert_status"] == "REVOKED" and "clients refuse the handshake" in row["problem"]
    assert row["revocation_time"] is not None
    rotate_proxy(stapled.inventory(ocsp="disable_when_missing"))
    code, out = check(path, "--json")
    (row,) = json.loads(out)["ocsp"]
    assert code == 0 and row["stapling"] is False and row["responder_url"] is None


def ocsp_findings(path: Path) -> list[dict[str, str]]:
    result = CliRunner().invoke(app, ["config", "check", "-c", str(path), "--json"])
    assert result.exit_code == 0, result.stdout  # a warning, not an error: the inventory is usable
    return [f for f in json.loads(result.stdout)["findings"] if "OCSP" in f["message"] or "staple" in f["message"]]


def test_config_check_warns_when_the_proxy_issuer_puts_no_ocsp_url(stapled: Stapled) -> None:
    (finding,) = ocsp_findings(stapled.inventory_path())
    assert (finding["where"], finding["severity"]) == ("issuers.internal", "warning")
    assert "this internal CA has no ocsp_url" in finding["message"] and "will be refused" in finding["message"]
    (finding,) = ocsp_findings(stapled.inventory_path(ocsp="disable_when_missing"))
    assert finding["severity"] == "warning" and "will turn stapling off" in finding["message"]
    (finding,) = ocsp_findings(stapled.inventory_path(ocsp_url=stapled.responder.url))
    assert finding["severity"] == "ok" and "can keep stapling" in finding["message"]
    assert stapled.rest("PUT", "/v1/ocsp", json={"ocsp_functionality": False}).status_code == 200
    assert ocsp_findings(stapled.inventory_path()) == []  # stapling off: nothing to warn about


def test_before_6_2_12_there_is_no_stapling_to_read(tmp_path: Path, ca_files: tuple[Path, Path],
                                                     state_dir: Path) -> None:
    sim = start_simulator(tmp_path, nodes=1, version="6.2.10-129", expires_in=dt.timedelta(days=60))
    try:  # /v1/ocsp answers 406 there: reading it would refuse every proxy rotation
        path = write_inventory(tmp_path / "rotation.yaml", sim, ca_files)
        record = rotate_proxy(load_inventory(path))
        assert record.outcome is Outcome.VERIFIED, record.error
        assert not [s.name for s in record.steps if "ocsp" in s.name]
        code, out = check(path, "--json")
        assert code == 0 and json.loads(out)["ocsp"] == []
    finally:
        sim.stop()


def test_stapling_off_whose_answer_never_came_is_turned_on_again(stapled: Stapled) -> None:
    inventory = stapled.inventory(ocsp="disable_when_missing")
    stapled.sim.log_requests()
    stapled.sim.fail_requests(1, 503, method="PUT", path="/v1/ocsp")  # not applied; shows where it comes
    first = rotate_proxy(inventory)
    assert first.outcome is Outcome.REFUSED and stapled.stapling()
    assert [c["undone"] for c in first.companions] == [True]  # a 5xx may have applied: turned on (again)
    stapled.sim.fail_nth(stapled.sim.logged_requests().index("PUT /v1/ocsp") + 1, "reset")  # applied, unanswered
    record = rotate_proxy(inventory)
    assert record.outcome is Outcome.REFUSED and not record.pushed, record.error
    assert stapled.stapling()  # the change was made: the record named it first, so it was undone
    assert [(c["memo"], c["undone"]) for c in record.companions] == [({"action": "stapling_off"}, True)]
    assert "turned on again" in step(record, "undo:ocsp")
