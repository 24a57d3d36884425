"""The simulator's certificate (mTLS) login, Basic turned off, users and JWTs, over real sockets."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from support.cluster import free_loopback_base, start_simulator
from support.rest import FQDN, Rest, client_ca, client_files, context

from rotation.simulator import ClusterSimulator, SimulatorError

ROOT = Path(__file__).resolve().parents[2]


def start(tmp_path: Path, version: str = "8.2.0-46", **overrides: Any) -> ClusterSimulator:
    return start_simulator(tmp_path, **{"version": version, "nodes": 2, "databases": [], **overrides})


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ClusterSimulator]:
    simulator = start(tmp_path)
    yield simulator
    simulator.stop()


def claims(token: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


# -- certificate login ------------------------------------------------------------------------------


def test_certificate_login_maps_the_exact_subject_to_its_user(sim: ClusterSimulator, tmp_path: Path) -> None:
    admin, ca = Rest(sim), client_ca("ops client CA")
    assert admin("PUT", "/v1/cluster", json={"mtls_certificate_authentication": True}).json()["error_code"] \
        == "missing_mtls_trusted_ca"
    upload = {"certificates": [{"name": "mtls_trusted_ca", "certificate": ca.pem}]}
    assert admin("PUT", "/v1/cluster/certificates", json=upload).status_code == 200
    certs = admin("GET", "/v1/cluster/certificates").json()
    assert certs["mtls_trusted_ca_cert"] == ca.pem and "mtls_trusted_ca_key" not in certs
    assert admin("PUT", "/v1/cluster", json={"mtls_certificate_authentication": True}).status_code == 200
    for subject, role in (("CN=robot,OU=ops,O=Example", "admin"), ("CN=reader,O=Example", "cluster_viewer")):
        made = admin("POST", "/v1/users", json={"auth_method": "certificate", "certificate_subject_line": subject,
                                                 "role": role, "name": subject[3:9]})
        assert made.status_code == 200 and made.json()["certificate_subject_line"] == subject
        assert "password" not in made.text
    robot = client_files(tmp_path, ca, "CN=robot,OU=ops,O=Example")
    for node in (1, 2):  # no Authorization header at all: the certificate is the login
        assert Rest(sim, cert=robot, basic=None, node=node)("GET", "/v1/nodes").status_code == 200
    assert Rest(sim, cert=robot, basic=None)("PUT", "/v1/cluster", json={"http_support": True}).status_code == 200
    reader = Rest(sim, cert=client_files(tmp_path, ca, "CN=reader,O=Example"), basic=None)
    assert reader("GET", "/v1/cluster").status_code == 200
    assert reader("PUT", "/v1/cluster", json={"http_support": True}).json()["error_code"] == "insufficient_permissions"
    for subject in ("CN=stranger,O=Example", "CN=robot,OU=ops,O=Example,C=US"):  # exact match only
        refused = Rest(sim, cert=client_files(tmp_path, ca, subject), basic=None)("GET", "/v1/nodes")
        assert refused.status_code == 401 and refused.json()["error_code"] == "unauthorized"
        assert f"No certificate user has the subject {subject}" == refused.json()["description"]
    assert admin("GET", "/v1/nodes").status_code == 200  # certificate login is additive: Basic still works
    users = admin("GET", "/v1/users").json()
    assert [u["auth_method"] for u in users] == ["regular", "regular", "certificate", "certificate"]
    assert not any("password" in u for u in users)


def test_trusted_ca_decides_the_handshake_and_reloads(sim: ClusterSimulator, tmp_path: Path) -> None:
    login = sim.cert_login.enable("CN=robot,OU=ops,O=Example")
    old, new_ca = (login.cert_path, login.key_path), client_ca("next client CA")
    new = client_files(tmp_path, new_ca, login.subject)
    assert Rest(sim, cert=old, basic=None)("GET", "/v1/nodes").status_code == 200
    with pytest.raises(httpx.TransportError):  # refused in the handshake: the connection drops, no HTTP answer
        Rest(sim, cert=new, basic=None)("GET", "/v1/nodes")
    admin = Rest(sim)

    def trust(bundle: str) -> int:
        body = {"name": "mtls_trusted_ca", "certificate": bundle}
        return admin("PUT", "/v1/cluster/update_cert", json=body).status_code

    assert trust(login.ca_path.read_text() + new_ca.pem) == 200  # make-before-break: old and new CA together
    for files in (old, new):
        assert Rest(sim, cert=files, basic=None, node=2)("GET", "/v1/nodes").status_code == 200
    assert trust(new_ca.pem) == 200
    assert Rest(sim, cert=new, basic=None)("GET", "/v1/nodes").status_code == 200
    with pytest.raises(httpx.TransportError):
        Rest(sim, cert=old, basic=None)("GET", "/v1/nodes")
    # feature off: no certificate is asked for (none is verified), so a certificate alone is no login
    assert admin("PUT", "/v1/cluster", json={"mtls_certificate_authentication": False}).status_code == 200
    for files in (old, new):
        off = Rest(sim, cert=files, basic=None)("GET", "/v1/nodes")
        assert off.status_code == 401 and off.json()["description"] == "Authentication required"


def test_subject_validation_modes(sim: ClusterSimulator, tmp_path: Path) -> None:
    sim.cert_login.enable("CN=robot,OU=ops,O=Example")
    files = client_files(tmp_path, sim.accounts.client_ca, "CN=robot,OU=ops,O=Example", "robot.example.com")  # type: ignore[arg-type]
    admin, robot = Rest(sim), Rest(sim, cert=files, basic=None)
    cases = [
        ("san_cn", [{"CN": "someone-else"}], 401),
        ("san_cn", [{"CN": "robot.example.com"}], 200),  # a SAN DNS name counts as the CN
        ("san_cn", [{"CN": "robot"}], 200),
        ("full_subject", [{"CN": "robot", "O": "Example"}], 401),  # the OU is missing
        ("full_subject", [{"CN": "robot", "OU": ["ops"], "O": "Example"}], 200),
        ("disabled", [], 200),
    ]
    for kind, subjects, status in cases:
        body = {"mtls_client_cert_subject_validation_type": kind, "mtls_authorized_subjects": subjects}
        assert admin("PUT", "/v1/cluster", json=body).status_code == 200
        answer = robot("GET", "/v1/nodes")
        assert answer.status_code == status, (kind, subjects)
        if status == 401:
            assert "not in mtls_authorized_subjects" in answer.json()["description"]
    for body in ({"mtls_client_cert_subject_validation_type": "san_cn"},  # no subjects at all
                 {"mtls_client_cert_subject_validation_type": "exact"},
                 {"mtls_authorized_subjects": [{"CN": "x", "OU": "not-a-list"}]}):
        assert admin("PUT", "/v1/cluster", json=body).json()["error_code"] == "invalid_value", body


# -- Basic off, JWTs, break glass ---------------------------------------------------------------------


def test_basic_off_leaves_certificates_and_jwts(sim: ClusterSimulator) -> None:
    login = sim.cert_login.enable()
    robot, admin = Rest(sim, cert=(login.cert_path, login.key_path), basic=None), Rest(sim)
    assert robot("PUT", "/v1/cluster", json={"control_plane_basic_authentication": False}).status_code == 200
    assert robot("GET", "/v1/cluster").json()["control_plane_basic_authentication"] is False
    refused = admin("GET", "/v1/nodes")
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    assert "Basic authentication is disabled" in refused.json()["description"]
    default = robot("POST", "/v1/users/authorize", json={}).json()["access_token"]
    assert claims(default)["exp"] - claims(default)["iat"] == 300
    token = robot("POST", "/v1/users/authorize", json={"ttl": 60}).json()["access_token"]
    assert claims(token)["exp"] - claims(token)["iat"] == 60
    bearer = Rest(sim, basic=None)
    assert bearer("GET", "/v1/nodes", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert bearer("POST", "/v1/users/authorize", json={},
                  headers={"Authorization": f"Bearer {token}"}).status_code == 401  # a JWT mints no JWT
    for ttl in (0, 86401, "60", True):
        assert robot("POST", "/v1/users/authorize", json={"ttl": ttl}).json()["error_code"] == "invalid_request"
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert bearer("GET", "/v1/nodes", headers={"Authorization": f"Bearer {tampered}"}).status_code == 401
    sim.accounts.clock = lambda: time.time() + 61  # the token's ttl has passed
    expired = bearer("GET", "/v1/nodes", headers={"Authorization": f"Bearer {token}"})
    assert expired.status_code == 401 and expired.json()["description"] == "The token is invalid or expired"
    # break glass: the rladmin stand-in (a node's shell: the admin password still opens /_sim/*)
    assert admin("GET", "/_sim/state").status_code == 200
    bad = admin("POST", "/_sim/rladmin", json={"command": "tune cluster everything off"})
    assert bad.status_code == 400 and bad.json()["error_code"] == "invalid_rladmin_command"
    glass = admin("POST", "/_sim/rladmin", json={"command": "tune cluster control_plane_basic_authentication enabled"})
    assert glass.status_code == 200 and admin("GET", "/v1/nodes").status_code == 200
    sim.cert_login.rladmin("tune cluster control_plane_basic_authentication disabled")
    assert admin("GET", "/v1/nodes").status_code == 401


def test_version_gates(tmp_path: Path) -> None:
    before_basic_switch = start(tmp_path, version="8.0.2-17", nodes=1)
    try:
        answer = Rest(before_basic_switch)("PUT", "/v1/cluster", json={"control_plane_basic_authentication": False})
        assert answer.status_code == 400 and answer.json()["error_code"] == "invalid_field"
        assert "control_plane_basic_authentication" not in Rest(before_basic_switch)("GET", "/v1/cluster").json()
        with pytest.raises(ValueError, match="8.2.0"):
            before_basic_switch.cert_login.enable(basic=False)
    finally:
        before_basic_switch.stop()
    before_cert_login = start(tmp_path, version="7.4.2-54", nodes=1)
    try:
        rest, ca = Rest(before_cert_login), client_ca("old")
        upload = rest("PUT", "/v1/cluster/update_cert", json={"name": "mtls_trusted_ca", "certificate": ca.pem})
        assert upload.status_code == 403 and upload.json()["error_code"] == "unknown_certificate"
        assert rest("PUT", "/v1/cluster", json={"mtls_certificate_authentication": True}).json()["error_code"] \
            == "invalid_field"
        user = {"auth_method": "certificate", "certificate_subject_line": "CN=a", "role": "admin"}
        assert rest("POST", "/v1/users", json=user).json()["error_code"] == "invalid_value"
        assert not any(key.startswith("mtls") for key in rest("GET", "/v1/cluster").json())
        with pytest.raises(ValueError, match="7.8.4"):
            before_cert_login.cert_login.enable()
    finally:
        before_cert_login.stop()


def test_user_validation(sim: ClusterSimulator) -> None:
    rest = Rest(sim)

    def post(**body: Any) -> tuple[int, str]:
        answer = rest("POST", "/v1/users", json=body)
        return answer.status_code, answer.json().get("error_code", "")

    cert_user = {"auth_method": "certificate", "role": "admin"}
    for line in ("CN=a, O=b", "O=b,CN=a", "CN=a,OU=x,OU=y", "", "CN=a,=b"):
        assert post(**cert_user, certificate_subject_line=line) == (400, "invalid_certificate_subject_line"), line
    assert post(**cert_user, certificate_subject_line="CN=a", password="x") == (400, "invalid_request")
    assert post(email="x@example.com", role="admin") == (400, "invalid_request")  # no password
    assert post(email="x@example.com", password="pw", role="root") == (400, "invalid_value")
    assert post(email="x@example.com", password="pw", role="admin", auth_method="sso") == (400, "invalid_value")
    assert post(email="x@example.com", password="pw", role="admin", role_uids=[1]) == (400, "invalid_request")
    assert post(email=sim.viewer_username, password="pw", role="admin") == (409, "email_already_exists")
    reader = {"auth_method": "certificate", "role": "db_viewer", "certificate_subject_line": "CN=a,O=b"}
    assert post(**reader)[0] == 200
    assert post(**reader) == (409, "certificate_subject_line_already_exists")
    demote = rest("PUT", "/v1/users/1", json={"role": "cluster_viewer"})
    assert demote.status_code == 406 and demote.json()["error_code"] == "change_last_admin_role_not_allowed"
    assert rest("PUT", "/v1/users/9", json={"name": "x"}).json()["error_code"] == "user_not_found"
    assert rest("GET", "/v1/users/2").json()["role"] == "cluster_viewer"
    assert Rest(sim, basic="viewer")("GET", "/v1/users").status_code == 403
    assert rest("PUT", "/v1/users/2", json={"password": "a-new-passphrase"}).status_code == 200
    assert Rest(sim, basic=None)("GET", "/v1/nodes", auth=(sim.viewer_username, "a-new-passphrase")).status_code == 200


# -- the inventory entry and the CLI -----------------------------------------------------------------


def test_inventory_entry_describes_certificate_login(sim: ClusterSimulator) -> None:
    with pytest.raises(SimulatorError, match="not set up"):
        sim.inventory_entry("lab", login="certificate")
    with pytest.raises(ValueError):
        sim.inventory_entry("lab", login="token")
    sim.cert_login.enable(basic=False)
    entry = sim.inventory_entry("lab", login="certificate")
    assert "username" not in entry and "password_file" not in entry
    assert os.stat(entry["client_key_file"]).st_mode & 0o777 == 0o600
    with httpx.Client(verify=context(entry["verify"], (entry["client_cert_file"], entry["client_key_file"]))) as client:
        answer = client.get(f"{entry['url']}/v1/cluster", extensions={"sni_hostname": entry["tls_server_name"]})
    assert answer.status_code == 200 and answer.json()["control_plane_basic_authentication"] is False
    both = sim.inventory_entry("lab", login="both")
    assert both["username"] == sim.admin_username and both["client_cert_file"] == entry["client_cert_file"]
    assert "client_cert_file" not in sim.inventory_entry("lab")


def test_cli_certificate_login_basic_off_and_database_certificates(tmp_path: Path) -> None:
    base, inventory = free_loopback_base(), tmp_path / "inv.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rotation.simulator", "--nodes", "1", "--first-address", base, "--fqdn", FQDN,
         "--state-dir", str(tmp_path / "state"), "--write-config", str(inventory), "--version", "8.2.0-46",
         "--basic-off", "--database-certs", "1", "--databases", "12000,12001"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Serving"):
                break
        entry = yaml.safe_load(inventory.read_text())["clusters"]["sim"]
        assert "password_file" not in entry and any("Basic off" in line for line in lines)
        files = (entry["client_cert_file"], entry["client_key_file"])
        with httpx.Client(verify=context(entry["verify"], files)) as client:
            own = client.get(f"{entry['url']}/v1/bdbs/1/certificates", extensions={"sni_hostname": FQDN})
            assert own.status_code == 200 and own.json()["bdb_uid"] == 1
            assert client.get(f"{entry['url']}/v1/bdbs/2/certificates",
                              extensions={"sni_hostname": FQDN}).status_code == 404
        with httpx.Client(verify=context(entry["verify"]), auth=(f"admin@{FQDN}", "x")) as client:
            assert client.get(f"{entry['url']}/v1/nodes", extensions={"sni_hostname": FQDN}).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
