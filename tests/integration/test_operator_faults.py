"""Faults as an operator meets them at the command line: trust, locks, Redis away, backoff, a broken
inventory edit, processes that must refuse to start. Each ends with a clear message and the exit
code the README defines, and changes nothing it should not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.certs import make_cert
from support.cluster import handshake_fingerprint, write_inventory
from support.processes import ROOT, free_port
from typer.testing import CliRunner

from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.adapters.state.local import LocalState
from rotation.config import local_state_dir
from rotation.core import certs
from rotation.core.errors import RotationInProgress
from rotation.core.model import RotationRecord, Step
from rotation.simulator import ClusterSimulator
from rotation.usecases.context import ServiceContext
from workers.main import app

runner = CliRunner()
FQDN = "cluster.test.local"


def _pair(directory: Path, issuer: tuple | None = None) -> tuple[Path, Path, Path]:
    """A leaf for the cluster's names, self-signed or issued by ``issuer`` (cert, key); files written."""
    directory.mkdir(parents=True, exist_ok=True)
    if issuer is None:
        leaf, key = make_cert()
        ca_pem = certs.cert_to_pem(leaf)
    else:
        leaf, key = make_cert(issuer[1], "Operator Root")
        ca_pem = certs.cert_to_pem(issuer[0])
    (directory / "cert.pem").write_text(certs.cert_to_pem(leaf))
    (directory / "key.pem").write_text(certs.private_key_to_pem(key).reveal())
    (directory / "ca.pem").write_text(ca_pem)
    return directory / "cert.pem", directory / "key.pem", directory / "ca.pem"


# --- trust is never skipped -----------------------------------------------------------------
def test_pushed_chains_must_lead_to_a_configured_anchor(
    simulator: ClusterSimulator, inventory_path: Path, state_dir: Path, tmp_path: Path
) -> None:
    root = make_cert(ca=True, cn="Operator Root")
    cert, key, ca = _pair(tmp_path / "byo", root)
    api_before = simulator.served_fingerprint(1, "api")
    rotate = ["rotate", "sim", "-c", str(inventory_path), "--cert-file", str(cert), "--key-file", str(key), "--json"]

    # No anchor for this chain (not the issuer's, not the cluster's verify bundle): refused, exit 2.
    result = runner.invoke(app, [*rotate[:2], "proxy", *rotate[2:]])
    assert result.exit_code == 2, result.output
    assert "is not issued by a trusted CA" in json.loads(result.stdout)[0]["error"]

    # --trust names the anchor: the same certificate goes through and is verified.
    result = runner.invoke(app, [*rotate[:2], "proxy", *rotate[2:], "--trust", str(ca)])
    assert result.exit_code == 0, result.output
    assert handshake_fingerprint(simulator.node_addresses[2], 12000, f"redis-12000.{FQDN}") == \
        json.loads(result.stdout)[0]["new_fingerprint"]

    # For api that is not enough: a REST client of a later process would not trust it (lock-out).
    result = runner.invoke(app, [*rotate[:2], "api", *rotate[2:], "--trust", str(ca)])
    assert result.exit_code == 2, result.output
    assert "the REST client would not trust this api certificate" in json.loads(result.stdout)[0]["error"]

    # A self-signed api certificate (the lock-out of issue 11) is refused the same way.
    self_signed, self_key, _ = _pair(tmp_path / "self")
    result = runner.invoke(app, ["rotate", "sim", "api", "-c", str(inventory_path), "--cert-file", str(self_signed),
                                 "--key-file", str(self_key), "--trust", str(self_signed), "--json"])
    assert result.exit_code == 2 and "REST client would not trust" in json.loads(result.stdout)[0]["error"]
    assert simulator.served_fingerprint(1, "api") == api_before
    assert runner.invoke(app, ["check", "-c", str(inventory_path)]).exit_code in (0, 1)  # still reachable


def test_without_any_anchor_the_chain_is_refused(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from rotation.adapters.issuers.files import FileIssuer
    from rotation.core.errors import ValidationError
    from rotation.core.model import CertName, CertRequest
    from rotation.core.validate import validate_issued

    cert, key, _ = _pair(tmp_path / "byo", make_cert(ca=True, cn="Operator Root"))
    issued = FileIssuer("corp", cert, key).issue(CertRequest("x", CertName.PROXY, (FQDN,)))
    request = CertRequest("x", CertName.PROXY, (FQDN,))
    with pytest.raises(ValidationError, match="no trust anchor configured"):
        validate_issued(issued, request, now=datetime.now(UTC), require_anchor=True)


def test_api_is_verified_over_fresh_connections(simulator: ClusterSimulator, inventory_path: Path,
                                                state_dir: Path) -> None:
    from support.rotate import rotate_here

    from rotation.config import load_inventory
    from rotation.usecases.rotate.run import RotationOptions

    seen: dict[str, int] = {}

    def count(record: RotationRecord, step: Step) -> None:
        if step.name == "verify":
            seen["end" if step.finished_at else "start"] = simulator.rest_connections(1)

    (record,) = rotate_here(load_inventory(inventory_path), "sim", ["api"],
                              RotationOptions(poll_interval=0.1, progress=count))
    assert record.outcome.value == "verified", record.error
    assert seen["end"] > seen["start"]  # a new TLS session proved the new certificate is trusted


# --- locks: the cluster, not the name or the folder -------------------------------------------
def test_one_lock_per_cluster_whatever_the_name_or_folder(
    simulator: ClusterSimulator, tmp_path: Path, ca_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ROTATION_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("ROTATION_STORE", "local")
    assert local_state_dir() == tmp_path / "xdg" / "rotation"
    east = write_inventory(tmp_path / "east.yaml", simulator, ca_files, name="east")  # same cluster, other name
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    identity = f"{simulator.node_addresses[0]}:{simulator.config.api_port}"
    monkeypatch.chdir(tmp_path / "one")
    state = LocalState(local_state_dir(), SYSTEM_CLOCK)
    with state.hold(identity, "cm", "rotation abc (cli) from folder one"):
        monkeypatch.chdir(tmp_path / "two")
        result = runner.invoke(app, ["rotate", "east", "cm", "--inline", "-c", str(east), "--json"])
        with pytest.raises(RotationInProgress), state.hold(identity, "cm", "from two"):
            pass
    assert result.exit_code == 2, result.output
    (record,) = json.loads(result.stdout)
    assert "already in progress (rotation abc (cli) from folder one)" in record["error"] and record["blocked_by"]
    assert not simulator.received_update_bodies


# --- Redis unreachable: one line, the URL without its password, exit 2 ------------------------
@pytest.mark.parametrize("command", [["rotate", "sim", "cm"], ["rotate", "sim", "cm", "--dry-run"], ["history"],
                                     ["status"], ["retry", "sim", "cm"]])
def test_redis_unreachable_is_one_line_and_exit_2(
    inventory_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    url = f"redis://:hunter2-not-shown@127.0.0.1:{free_port()}/0"
    for name, value in {"ROTATION_REDIS_URL": url, "ROTATION_STORE": "redis", "ROTATION_CONFIG": str(inventory_path),
                        "ROTATION_SECRET_KEY": "a" * 43 + "=", "ROTATION_STATE_DIR": str(tmp_path / "s")}.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, command)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and url.replace("hunter2-not-shown", "***") in lines[0], result.stderr
    assert "hunter2" not in result.output + result.stderr


# --- backoff counts real failures only ----------------------------------------------------------
def test_backoff_counts_real_failures_and_rotation_retry_clears_it(
    simulator: ClusterSimulator, service_env: dict[str, str], tmp_path: Path
) -> None:
    from rotation.adapters.state.redis_lock import RedisLocker

    ctx = ServiceContext()
    store = ctx.state

    def state(cert: str) -> tuple[int, bool]:
        fields = store.state("sim", cert)
        return int(fields.get("failures") or 0), bool(fields.get("next_attempt"))

    no_issuer = yaml.safe_load(Path(service_env["ROTATION_CONFIG"]).read_text())
    no_issuer["issuers"] = {}
    no_issuer["clusters"]["sim"].pop("issuer")
    (tmp_path / "no-issuer.yaml").write_text(yaml.safe_dump(no_issuer))
    result = runner.invoke(app, ["rotate", "sim", "proxy", "--dry-run", "-c", str(tmp_path / "no-issuer.yaml")])
    assert result.exit_code == 2 and "no issuer configured" in result.stdout
    assert state("proxy") == (0, False)  # a refused dry run is not a failure

    identity = f"{simulator.node_addresses[0]}:{simulator.config.api_port}"
    with RedisLocker(ctx.redis, 30).hold(identity, "cm", "another rotation"):
        assert runner.invoke(app, ["rotate", "sim", "cm", "--inline"]).exit_code == 2
    assert state("cm") == (0, False)  # neither is "already in progress"

    simulator.fail_next(1, 400)  # RS refuses the certificate: a real failure
    assert runner.invoke(app, ["rotate", "sim", "cm", "--inline"]).exit_code == 2
    assert state("cm") == (1, True)
    result = runner.invoke(app, ["status", "--json"])
    (cm,) = [row for row in json.loads(result.stdout)["certificates"] if row["cert"] == "cm"]
    assert "HTTP 400" in cm["backoff"]["reason"] and cm["backoff"]["until"]
    assert "rotation retry CLUSTER CERT" in runner.invoke(app, ["status"]).stderr

    assert runner.invoke(app, ["rotate", "sim", "cm", "--dry-run"]).exit_code == 0
    assert state("cm") == (0, False)  # a good result clears it

    simulator.fail_next(1, 400)
    runner.invoke(app, ["rotate", "sim", "cm", "--inline"])
    assert state("cm") == (1, True)
    result = runner.invoke(app, ["retry", "sim", "cm"])
    assert result.exit_code == 0 and "backoff cleared (1 failure(s)" in result.stdout
    assert state("cm") == (0, False)
    assert runner.invoke(app, ["retry", "sim", "ldap"]).exit_code == 2


# --- a live inventory edit that does not load -------------------------------------------------
def test_a_broken_inventory_edit_keeps_the_last_good_one_and_says_so(service_env: dict[str, str]) -> None:
    path = Path(service_env["ROTATION_CONFIG"])
    good = path.read_text()
    ctx = ServiceContext()
    before = ctx.inventory()
    path.write_text(good + "\nclusters: [\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert ctx.inventory() is before  # kept
    result = runner.invoke(app, ["status"])
    assert "does not load since" in result.stderr and "keep the inventory loaded at" in result.stderr
    path.write_text(good.replace("verify_deadline: 5s", "verify_deadline: 6s"))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 2 * 10**9))
    assert ctx.inventory().clusters["sim"].verify_deadline.total_seconds() == 6
    assert json.loads(runner.invoke(app, ["status", "--json"]).stdout)["inventory_problems"] == []


# --- processes that cannot work refuse to start -----------------------------------------------
@pytest.mark.parametrize(("command", "change", "message"), [
    (["worker"], {"ROTATION_SECRET_KEY": None}, "no encryption key: set ROTATION_SECRET_KEY"),
    (["beat"], {"ROTATION_SECRET_KEY": "not-a-fernet-key"}, "ROTATION_SECRET_KEY: not a Fernet key"),
    (["webhook", "--port", "0"], {"ROTATION_CONFIG": "/nonexistent/rotation.yaml"}, "inventory file not found"),
])
def test_service_processes_refuse_to_start_without_what_they_need(
    service_env: dict[str, str], command: list[str], change: dict[str, str | None], message: str
) -> None:
    env = {k: v for k, v in {**service_env, **change}.items() if v is not None}
    result = subprocess.run([sys.executable, "-m", "workers.main", *command], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
