"""Each operator command and service process against a dependency that is down or wrong (real processes,
loopback only): one line naming what and where, the exit code the README gives, valid JSON under
--json, nothing changed on the cluster, and an end in bounded time. Cells test_operator_faults.py and
test_cli_hostile_input.py cover already are not repeated here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cluster import write_inventory
from support.processes import ROOT, RedisServer, free_port

from rotation.simulator import ClusterSimulator


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATION_", "PYTEST_", "RS_SIM_"))}
    return {**base, "PYTHONPATH": str(ROOT), "ROTATION_STATE_DIR": str(tmp_path / "state"),
            "ROTATION_SECRET_KEY": "a" * 43 + "="}


def rotation(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def one_error_line(result: subprocess.CompletedProcess[str], *said: str, code: int = 2) -> str:
    """The exit code, no traceback, and one ``error:`` line saying each of ``said``; that line."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for text in said:
        assert text in errors[0], result.stderr
    return errors[0]


# --- Redis up, but a read-only replica (READONLY on every write) -----------------------------------
@pytest.fixture
def replica(tmp_path: Path) -> Iterator[RedisServer]:
    """A real replica of a master that is not there: it answers reads and refuses every write."""
    with RedisServer(tmp_path / "replica", "--replicaof", "127.0.0.1", str(free_port())) as server:
        yield server


@pytest.mark.parametrize("args", [["rotate", "sim", "cm"], ["rotate", "sim", "cm", "--inline", "--json"],
                                  ["rotate", "sim", "cm", "--dry-run"], ["retry", "sim", "cm"],
                                  ["worker", "--no-supervise"], ["beat"]])
def test_a_read_only_replica_is_named_in_one_line(env: dict[str, str], replica: RedisServer, tmp_path: Path,
                                                  simulator: ClusterSimulator, ca_files: tuple[Path, Path],
                                                  args: list[str]) -> None:
    inventory = write_inventory(tmp_path / "rotation.yaml", simulator, ca_files)
    # before: redis.exceptions.ReadOnlyError tracebacks, exit 1 (the worker and beat too)
    result = rotation(*args, "-c", str(inventory), env={**env, "ROTATION_REDIS_URL": replica.url})
    one_error_line(result, replica.url, "read-only replica")
    if "--json" in args:
        assert "read-only replica" in json.loads(result.stdout)["error"]
    assert not simulator.received_update_bodies


# --- ROTATION_STORE=local and a state folder nobody may write ----------------------------------------
@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder with a record in it that this process cannot change, even as root (immutable)."""
    directory = tmp_path / "state"
    directory.mkdir()
    (directory / "history.jsonl").write_text("")
    root = os.geteuid() == 0
    if root:
        subprocess.run(["chattr", "+i", str(directory)], check=True)
    else:
        directory.chmod(0o555)
    try:
        yield directory
    finally:
        if root:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        directory.chmod(0o755)


@pytest.mark.parametrize("args", [["retry", "sim", "cm"], ["rotate", "sim", "cm", "--inline", "--json"],
                                  ["rotate", "sim", "cm", "--dry-run"]])
def test_an_unwritable_local_state_folder_is_named_in_one_line(env: dict[str, str], read_only_dir: Path,
                                                               tmp_path: Path, simulator: ClusterSimulator,
                                                               ca_files: tuple[Path, Path], args: list[str]) -> None:
    inventory = write_inventory(tmp_path / "rotation.yaml", simulator, ca_files)
    local = {**env, "ROTATION_STORE": "local", "ROTATION_STATE_DIR": str(read_only_dir)}
    # before: PermissionError tracebacks, exit 1 ("rotation failed unexpectedly")
    result = rotation(*args, "-c", str(inventory), env=local)
    one_error_line(result, str(read_only_dir))
    if "--json" in args:
        assert str(read_only_dir) in json.loads(result.stdout)["error"]
    assert not simulator.received_update_bodies


def test_status_reads_a_local_state_folder_it_cannot_write(env: dict[str, str], read_only_dir: Path,
                                                          tmp_path: Path, simulator: ClusterSimulator,
                                                          ca_files: tuple[Path, Path]) -> None:
    inventory = write_inventory(tmp_path / "rotation.yaml", simulator, ca_files)
    local = {**env, "ROTATION_STORE": "local", "ROTATION_STATE_DIR": str(read_only_dir)}
    # before: PermissionError traceback (a lock file created to read); `history` read it all along
    result = rotation("status", "--json", "-c", str(inventory), env=local)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert str(read_only_dir) in json.loads(result.stdout)["source"]
    result = rotation("history", "--json", "-c", str(inventory), env=local)
    assert result.returncode == 0 and json.loads(result.stdout) == [], result.stderr


# --- no Celery worker running: a queued rotation is followed, and the follower says nobody took it ------
def test_a_queued_rotation_no_worker_takes_is_said_while_waiting(env: dict[str, str], own_redis: RedisServer,
                                                                 tmp_path: Path, simulator: ClusterSimulator,
                                                                 ca_files: tuple[Path, Path]) -> None:
    from support.processes import wait_for

    inventory = write_inventory(tmp_path / "rotation.yaml", simulator, ca_files)
    stderr = tmp_path / "stderr"
    with open(stderr, "w") as sink:
        process = subprocess.Popen([sys.executable, "-m", "workers.main", "rotate", "sim", "cm", "--json", "-c",
                                    str(inventory)], cwd=ROOT, env={**env, "ROTATION_REDIS_URL": own_redis.url},
                                   stdout=subprocess.DEVNULL, stderr=sink, text=True)
    try:
        # before: nothing at all for 30 minutes, then exit 1 with the record still in progress
        said = wait_for(lambda: [line for line in stderr.read_text().splitlines() if "no worker" in line], 60,
                        what="the no-worker warning", alive=lambda: process.poll() is None)
        assert process.poll() is None  # still following: a worker started now would run it
    finally:
        process.terminate()
        process.wait(10)
    (line,) = said
    assert line.startswith("warning: no worker has started rotation(s) ") and own_redis.url in line, line
    # it stays queued: a second request is refused as in progress, and says nothing of following
    again = rotation("rotate", "sim", "cm", "-c", str(inventory), env={**env, "ROTATION_REDIS_URL": own_redis.url})
    assert again.returncode == 2 and "a rotation is already in progress" in again.stderr, again.stderr
    assert "queued 0" not in again.stderr and "following" not in again.stderr, again.stderr  # before: both
    assert not simulator.received_update_bodies


# --- an inventory with no clusters (an empty file, a wrong ROTATION_CONFIG) ---------------------------
def test_an_inventory_with_no_clusters_is_not_reported_all_fine(env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "rotation.yaml"
    empty.write_text("")
    local = {**env, "ROTATION_STORE": "local"}
    # before: exit 0 and an empty table, as if every certificate were fine (policy audit said exit 2)
    result = rotation("check", "--json", "-c", str(empty), env=local)
    one_error_line(result, "no clusters in the inventory", str(empty))
    assert json.loads(result.stdout)["exit_code"] == 2
    # config check proves what is there usable: an empty inventory is, but it says there is nothing in it
    result = rotation("config", "check", "--json", "-c", str(empty), env=local)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["findings"] == [
        {"where": "clusters", "severity": "warning", "message": "none in the inventory: nothing to check or rotate"}]


# --- the webhook while Redis goes away and comes back -----------------------------------------------
def test_the_webhook_keeps_running_while_redis_is_away_and_recovers(chat_env, own_redis: RedisServer,
                                                                    inventory_path: Path, tmp_path: Path) -> None:
    from support.chat import start_webhook, write_chatops
    from support.processes import wait_for

    env, receiver = chat_env
    write_chatops(inventory_path, receiver)
    process, chat = start_webhook({**env, "ROTATION_REDIS_URL": own_redis.url}, tmp_path, own_redis, receiver)
    try:
        assert chat.generic("status sim").status_code == 200
        own_redis.stop()
        # before: HTTP 500 (a chat platform shows its own error, not ours) "see the webhook log", and there a
        # traceback; now the operator reads what is wrong in the chat, the log has one line
        away = chat.generic("status sim")
        assert away.status_code == 200 and "Redis is unreachable" in away.json()["text"], away.text
        assert process.process is not None and process.process.poll() is None
        own_redis.start()  # the same port: the webhook's connections come back on their own
        wait_for(lambda: "No state recorded yet" in chat.generic("status sim").json()["text"], 20,
                 what="the webhook answering from Redis again")
        own_redis.client().replicaof("127.0.0.1", free_port())  # a failover left us on a replica
        refused = chat.generic("rotate sim api")  # asks for a confirmation: a nonce to write
        assert refused.status_code == 200 and "read-only replica" in refused.json()["text"], refused.text
    finally:
        chat.close()
        process.stop()
    log = process.log()
    assert "Traceback" not in log and "Redis is unreachable" in log and "read-only replica" in log, log[-3000:]


# --- Redis up, but requiring a password we lack or do not have right -----------------------------------
@pytest.mark.parametrize("password", ["", "wrong-password-not-shown"])
@pytest.mark.parametrize("args", [["status"], ["rotate", "sim", "cm", "--json"]])
def test_redis_refusing_our_credentials_is_not_called_unreachable(env: dict[str, str], tmp_path: Path,
                                                                  ca_files: tuple[Path, Path], password: str,
                                                                  args: list[str]) -> None:

    with RedisServer(tmp_path / "redis", "--requirepass", "the-right-one") as server:
        url = server.url.replace("redis://", f"redis://:{password}@" if password else "redis://")
        inventory = tmp_path / "rotation.yaml"
        inventory.write_text(f"clusters:\n  sim: {{url: 'https://127.0.0.1:1', fqdn: sim.example.com, "
                             f"username: u, password_env: X, issuer: ca}}\nissuers:\n  ca: {{type: internal_ca, "
                             f"ca_cert: {ca_files[0]}, ca_key_file: {ca_files[1]}}}\n")
        # before: "Redis at ... is unreachable (HELLO must be called with the client already authenticated...)"
        result = rotation(*args, "-c", str(inventory), env={**env, "ROTATION_REDIS_URL": url})
    line = one_error_line(result, "refused the password" if password else "requires a password")
    assert "unreachable" not in line and "wrong-password-not-shown" not in result.stdout + result.stderr
    if "--json" in args:
        assert json.loads(result.stdout)["exit_code"] == 2


# --- the cluster's REST API over TLS we cannot verify (a wrong CA bundle) ---------------------------------
def test_a_cluster_error_is_one_line_when_stderr_is_a_file(env: dict[str, str], tmp_path: Path,
                                                          simulator: ClusterSimulator,
                                                          ca_files: tuple[Path, Path]) -> None:
    # `verify:` names our own internal CA, not the one the cluster's API certificate comes from
    inventory = write_inventory(tmp_path / "rotation.yaml", simulator, ca_files,
                                cluster_overrides={"verify": str(ca_files[0])})
    plain = {**env, "ROTATION_STORE": "local", "COLUMNS": "80"}  # cron, CI, a log collector: no terminal
    # before: the reason wrapped at 80 columns over four lines (a grep for it found a fragment)
    for args in (["check"], ["rotate", "sim", "cm", "--inline"], ["policy", "audit"]):
        result = rotation(*args, "-c", str(inventory), env=plain)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        # a rotation is refused with its record (stdout) once it reads the cluster; the others stop at stderr
        whole = [line for line in (result.stderr + result.stdout).splitlines()
                 if "TLS verification of https://" in line and "set `verify:` to the CA bundle" in line]
        assert whole, (args, result.stdout, result.stderr)
    assert not simulator.received_update_bodies


# --- ROTATION_SECRET_KEY changed: the ACME account was sealed with another key -------------------------
def test_an_acme_account_sealed_with_another_key_is_named(env: dict[str, str], tmp_path: Path,
                                                          simulator: ClusterSimulator, ca_files: tuple[Path, Path],
                                                          named, pebble) -> None:  # noqa: ANN001 - support.acme
    from test_acme import acme_inventory

    path = acme_inventory(tmp_path, simulator, ca_files, named, pebble).source
    local = {**env, "ROTATION_STORE": "local"}
    first = rotation("rotate", "sim", "api", "--dry-run", "-c", str(path), env=local)
    assert first.returncode == 0, first.stdout + first.stderr  # the account is registered, sealed with key A
    other_key = {**local, "ROTATION_SECRET_KEY": "b" * 43 + "="}
    result = rotation("rotate", "sim", "api", "--dry-run", "--json", "-c", str(path), env=other_key)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (record,) = json.loads(result.stdout)
    assert record["outcome"] == "refused" and "cannot decrypt with ROTATION_SECRET_KEY (key changed?" in record["error"]
    assert not simulator.received_update_bodies


# --- the ACME CA down ---------------------------------------------------------------------------------
def test_an_acme_directory_that_is_down_is_named_plainly(env: dict[str, str], tmp_path: Path,
                                                        simulator: ClusterSimulator,
                                                        ca_files: tuple[Path, Path]) -> None:
    import yaml

    path = write_inventory(tmp_path / "rotation.yaml", simulator, ca_files)
    data = yaml.safe_load(path.read_text())
    directory = f"https://127.0.0.1:{free_port()}/dir"  # nobody listens
    data["issuers"]["acme"] = {"type": "acme", "directory": directory, "email": "ops@example.com",
                               "dns": {"provider": "rfc2136", "server": f"127.0.0.1:{free_port()}",
                                       "zone": simulator.config.fqdn, "tsig_key_name": "k",
                                       "tsig_secret_env": "TSIG"}}
    data["clusters"]["sim"]["certificates"] = {"cm": {}, "api": {"issuer": "acme"}}
    path.write_text(yaml.safe_dump(data))
    result = rotation("rotate", "sim", "api", "--inline", "--json", "-c", str(path),
                      env={**env, "ROTATION_STORE": "local", "TSIG": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"})
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stdout + result.stderr
    (record,) = json.loads(result.stdout)
    # before: "... directory unreachable: _TrackedHTTPSPool(host='127.0.0.1', port=...): Max retries exceeded
    # with url: /dir (Caused by NewConnectionError(\\"_TrackedHTTPSConnection(...): Failed to establish ..."
    assert record["outcome"] == "refused", record
    assert record["error"] == f"ACME {directory}: directory unreachable: [Errno 111] Connection refused", record
    assert not simulator.received_update_bodies


# --- the cluster's REST API answering 403: credentials that may read but not change ---------------------
def test_config_check_names_credentials_that_may_not_change_the_cluster(env: dict[str, str], tmp_path: Path,
                                                                       simulator: ClusterSimulator,
                                                                       ca_files: tuple[Path, Path]) -> None:
    viewer = tmp_path / "viewer.pw"
    viewer.write_text(simulator.viewer_password)
    path = write_inventory(tmp_path / "rotation.yaml", simulator, ca_files, cluster_overrides={
        "username": simulator.viewer_username, "password_file": str(viewer)})
    # before: exit 0, "REST API answers and accepts the credentials", and every rotation then refused (403)
    result = rotation("config", "check", "--json", "-c", str(path), env={**env, "ROTATION_STORE": "local"})
    assert result.returncode == 2, result.stdout + result.stderr
    findings = {f["where"]: f for f in json.loads(result.stdout)["findings"]}
    assert findings["clusters.sim.username"]["severity"] == "error", findings
    assert "HTTP 403" in findings["clusters.sim.username"]["message"]
    assert not simulator.received_update_bodies


def test_beat_with_a_state_folder_it_cannot_write_is_one_line(env: dict[str, str], read_only_dir: Path,
                                                              own_redis: RedisServer, tmp_path: Path,
                                                              simulator: ClusterSimulator,
                                                              ca_files: tuple[Path, Path]) -> None:
    inventory = write_inventory(tmp_path / "rotation.yaml", simulator, ca_files)
    service = {**env, "ROTATION_REDIS_URL": own_redis.url, "ROTATION_STATE_DIR": str(read_only_dir)}
    # before: PermissionError traceback from Celery's shelve, exit 1 (the folder exists: only its creation was checked)
    result = rotation("beat", "-c", str(inventory), env=service)
    one_error_line(result, "--schedule-file", str(read_only_dir))
