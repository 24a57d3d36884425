"""Hostile or careless input at the prompt, through the real console script: each is one error line that
says what and where, exit 2, no traceback, no secret echoed, nothing done."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.cluster import write_inventory
from support.processes import RedisServer

from rotation.simulator import ClusterSimulator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATION_", "PYTEST_", "RS_SIM_"))}
    return {**base, "COLUMNS": "300", "PYTHONPATH": str(ROOT), "ROTATION_STATE_DIR": str(tmp_path / "state"),
            "ROTATION_STORE": "local", "ROTATION_SECRET_KEY": "a" * 43 + "="}


def rotation(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def refused(result: subprocess.CompletedProcess[str], *said: str) -> None:
    """Exit 2 with one ``error:`` naming what is wrong, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert "error: " in result.stderr, result.stderr
    for text in said:
        assert text in result.stderr, result.stderr


def small_inventory(tmp_path: Path, ca_files: tuple[Path, Path], **cluster: object) -> Path:
    data = {"issuers": {"internal": {"type": "internal_ca", "ca_cert": str(ca_files[0]),
                                     "ca_key_file": str(ca_files[1])}},
            "clusters": {"east": {"url": "https://127.0.0.1:1", "fqdn": "east.example.com", "issuer": "internal",
                                  "username": "admin@example.com", "password_env": "EAST_PW", **cluster}}}
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_duration_too_large_for_a_date_is_bad_input(env: dict[str, str], tmp_path: Path,
                                                      ca_files: tuple[Path, Path]) -> None:
    path = small_inventory(tmp_path, ca_files, renew_before="99999999999d")
    refused(rotation("check", "-c", str(path), env=env), "clusters.east.renew_before")
    refused(rotation("rotate", "east", "cm", "--verify-deadline", "99999999999d", "-c",
                     str(small_inventory(tmp_path, ca_files)), env=env), "99999999999d")
    refused(rotation("ca", "init", "--dir", str(tmp_path / "pki"), "--validity", "99999999999d", env=env),
            "99999999999d")
    assert not (tmp_path / "pki" / "ca-key.pem").exists()
    # one a timedelta holds, but no date (nor a socket timeout) can: before, a traceback after the checks
    refused(rotation("ca", "init", "--dir", str(tmp_path / "pki"), "--validity", "999999999d", env=env),
            "999999999d")
    assert not (tmp_path / "pki" / "ca-key.pem").exists()
    path = small_inventory(tmp_path, ca_files, handshake_timeout="999999999d")
    refused(rotation("check", "-c", str(path), env={**env, "EAST_PW": "x"}), "clusters.east.handshake_timeout")


def test_negative_or_zero_timeouts_are_refused_naming_the_field(env: dict[str, str], tmp_path: Path,
                                                              ca_files: tuple[Path, Path]) -> None:
    # before: accepted, and every REST call then "timed out", naming no field
    for field, value in (("request_timeout", -5), ("handshake_timeout", "0s"), ("verify_deadline", -1)):
        path = small_inventory(tmp_path, ca_files, **{field: value})
        refused(rotation("check", "-c", str(path), env={**env, "EAST_PW": "x"}), f"clusters.east.{field}")
    # before: 0s was silently ignored (the rotation was queued with the inventory's deadline)
    refused(rotation("rotate", "east", "cm", "--verify-deadline", "0s", "-c",
                     str(small_inventory(tmp_path, ca_files)), env=env),
            "--verify-deadline")


def test_a_secret_file_that_is_not_utf8_is_named_not_a_traceback(env: dict[str, str], tmp_path: Path,
                                                                 ca_files: tuple[Path, Path]) -> None:
    (tmp_path / "east.pw").write_bytes(b"\xff\xfesecret")
    data = yaml.safe_load(small_inventory(tmp_path, ca_files).read_text())
    del data["clusters"]["east"]["password_env"]
    data["clusters"]["east"]["password_file"] = "east.pw"
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump(data))
    checked = rotation("check", "-c", str(path), env=env)  # check names each cluster's error on its own line
    assert checked.returncode == 2 and "Traceback" not in checked.stderr, checked.stderr
    assert "clusters.east.password" in checked.stderr and "not UTF-8" in checked.stderr, checked.stderr
    checked = rotation("config", "check", "--offline", "--json", "-c", str(path), env=env)
    assert checked.returncode == 2 and "Traceback" not in checked.stderr, checked.stderr
    findings = {f["where"]: f for f in json.loads(checked.stdout)["findings"]}
    assert findings["clusters.east.password"]["severity"] == "error", findings


def test_a_fifo_as_inventory_is_refused_not_waited_on(env: dict[str, str], tmp_path: Path) -> None:
    fifo = tmp_path / "inv.yaml"
    os.mkfifo(fifo)  # nobody writes: opening it to read would wait forever
    refused(rotation("check", "-c", str(fifo), env=env), str(fifo), "not a regular file")


def test_a_secret_key_file_that_is_not_utf8_is_one_line(env: dict[str, str], tmp_path: Path,
                                                        own_redis: RedisServer, ca_files: tuple[Path, Path]) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_bytes(b"\xff" * 44)
    service = {k: v for k, v in env.items() if k not in ("ROTATION_STORE", "ROTATION_SECRET_KEY")}
    service.update(ROTATION_REDIS_URL=own_redis.url, ROTATION_SECRET_KEY_FILE=str(key_file))
    refused(rotation("worker", "--no-supervise", "-c", str(small_inventory(tmp_path, ca_files)), env=service),
            "ROTATION_SECRET_KEY_FILE")


def test_an_hour_outside_the_day_is_refused_at_start(env: dict[str, str], tmp_path: Path,
                                                     ca_files: tuple[Path, Path]) -> None:
    # before: accepted here, and beat died with Celery's traceback
    refused(rotation("status", "-c", str(small_inventory(tmp_path, ca_files)),
                     env={**env, "ROTATION_POLICY_AUDIT_HOUR": "25"}), "ROTATION_POLICY_AUDIT_HOUR")


@pytest.mark.parametrize("url", ["redis://:hunter2secret@127.0.0.1:notaport/0",
                                 "redis://:hunter2secret@127.0.0.1:99999/0",
                                 "http://:hunter2secret@127.0.0.1:6379/0",
                                 "rediss://:hunter2secret@127.0.0.1:6379/0?ssl_cert_reqs=bogus",
                                 # a '/', '?' or '#' left unencoded in the password: the part before it was
                                 # read as the port, and redis-py's message quoted it
                                 "redis://:hunter2secret/rest@127.0.0.1:6379/0",
                                 "redis://user:hunter2secret?rest@127.0.0.1:6379/0",
                                 "redis://:hunter2secret#rest@127.0.0.1:6379/0"])
def test_a_malformed_redis_url_is_one_line_without_its_password(env: dict[str, str], tmp_path: Path, url: str,
                                                                ca_files: tuple[Path, Path]) -> None:
    redis_env = {**{k: v for k, v in env.items() if k != "ROTATION_STORE"}, "ROTATION_REDIS_URL": url}
    result = rotation("status", "--json", "-c", str(small_inventory(tmp_path, ca_files)), env=redis_env)
    refused(result, "ROTATION_REDIS_URL")
    assert "hunter2secret" not in result.stdout + result.stderr
    assert json.loads(result.stdout)["exit_code"] == 2


def test_history_refuses_a_limit_below_one(env: dict[str, str], tmp_path: Path, simulator: ClusterSimulator,
                                           ca_files: tuple[Path, Path]) -> None:
    path = write_inventory(tmp_path / "sim.yaml", simulator, ca_files)
    for _ in range(2):
        dry = rotation("rotate", "sim", "proxy", "--dry-run", "--json", "-c", str(path), env=env)
        assert dry.returncode == 0, dry.stdout + dry.stderr
    # before: --limit -1 showed every record but the oldest, exit 0
    for limit in ("-1", "0"):
        result = rotation("history", "--limit", limit, "-c", str(path), env=env)
        assert result.returncode == 2 and "--limit" in result.stderr, (result.returncode, result.stdout,
                                                                      result.stderr)
        as_json = rotation("history", "--limit", limit, "--json", "-c", str(path), env=env)
        assert json.loads(as_json.stdout)["exit_code"] == 2, as_json.stdout  # like every error under --json


def test_a_key_written_twice_is_refused_naming_its_line(env: dict[str, str], tmp_path: Path,
                                                        ca_files: tuple[Path, Path]) -> None:
    # a copied cluster block left with the old name: before, the first `east` vanished from management
    path = tmp_path / "inv.yaml"
    path.write_text(f"""issuers:
  internal: {{type: internal_ca, ca_cert: {ca_files[0]}, ca_key_file: {ca_files[1]}}}
clusters:
  east:
    url: https://east.example.com:9443
    fqdn: east.example.com
    username: admin@example.com
    password_env: EAST_PW
  east:
    url: https://west.example.com:9443
    fqdn: west.example.com
    username: admin@example.com
    password_env: WEST_PW
""")
    result = rotation("check", "--json", "-c", str(path), env=env)
    refused(result, "line 9", "'east'")
    assert json.loads(result.stdout)["exit_code"] == 2


def test_a_zero_lease_or_interval_is_refused_naming_the_variable(env: dict[str, str], tmp_path: Path,
                                                                 simulator: ClusterSimulator, own_redis: RedisServer,
                                                                 ca_files: tuple[Path, Path]) -> None:
    path = write_inventory(tmp_path / "sim.yaml", simulator, ca_files)
    service = {**{k: v for k, v in env.items() if k != "ROTATION_STORE"}, "ROTATION_REDIS_URL": own_redis.url}
    # before: the rotation ran and failed with "unexpected error (ResponseError: invalid expire time ...)"
    result = rotation("rotate", "sim", "proxy", "--inline", "-c", str(path),
                      env={**service, "ROTATION_LOCK_LEASE": "0s"})
    refused(result, "ROTATION_LOCK_LEASE")
    assert not simulator.received_update_bodies
    # before: accepted, and beat would queue a scan of every cluster without pause
    for name in ("ROTATION_SCAN_INTERVAL", "ROTATION_BACKOFF_BASE", "ROTATION_TASK_TIME_LIMIT"):
        refused(rotation("status", "-c", str(path), env={**env, name: "0s"}), name)


@pytest.mark.parametrize("folder", ["d[/]", "d[red]"])
def test_config_check_prints_the_inventory_path_as_text(env: dict[str, str], tmp_path: Path, folder: str,
                                                        ca_files: tuple[Path, Path]) -> None:
    # before: the path was rich markup in the table's title: "[/]" a MarkupError traceback, "[red]" eaten
    (tmp_path / folder).mkdir(parents=True)
    path = tmp_path / folder / "inv.yaml"
    path.write_text(small_inventory(tmp_path, ca_files).read_text())
    result = rotation("config", "check", "--offline", "-c", str(path), env={**env, "EAST_PW": "x"})
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert f"Inventory{path}" in "".join(result.stdout.split()), result.stdout  # the title wraps


def test_a_certificate_named_twice_is_rotated_once(env: dict[str, str], tmp_path: Path, simulator: ClusterSimulator,
                                                   ca_files: tuple[Path, Path]) -> None:
    # before: two full rotations, one after the other (two issuances, two pushes; queued: the second refused)
    path = write_inventory(tmp_path / "sim.yaml", simulator, ca_files)
    result = rotation("rotate", "sim", "proxy", "proxy", "--inline", "--json", "-c", str(path), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [r["cert_name"] for r in json.loads(result.stdout)] == ["proxy"]
    assert len(simulator.received_update_bodies) == 1


def test_ca_init_refuses_bad_options_naming_them_and_writes_nothing(env: dict[str, str], tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    # before: FileExistsError / FileNotFoundError tracebacks
    refused(rotation("ca", "init", "--dir", str(a_file), env=env), "--dir", str(a_file))
    refused(rotation("ca", "init", "--dir", str(a_file / "below"), env=env), "--dir")
    # before: a CA valid for no time at all was written, exit 0
    refused(rotation("ca", "init", "--dir", str(tmp_path / "zero"), "--validity", "0s", env=env), "--validity")
    # before: "Attribute's length must be >= 1 and <= 64", naming no option, and an empty folder left behind
    refused(rotation("ca", "init", "--dir", str(tmp_path / "empty-cn"), "--cn", "", env=env), "--cn")
    assert not (tmp_path / "zero").exists() and not (tmp_path / "empty-cn").exists()


def test_service_ports_out_of_range_or_taken_are_refused(env: dict[str, str], tmp_path: Path,
                                                         own_redis: RedisServer) -> None:
    import socket

    service = {**{k: v for k, v in env.items() if k != "ROTATION_STORE"}, "ROTATION_REDIS_URL": own_redis.url}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        # before: OSError / OverflowError / gaierror tracebacks, exit 1
        for args in (["--port", port], ["--port", "99999"], ["--port", "9464", "--address", "no.such.host.invalid"]):
            result = rotation("metrics", *args, env=service)
            assert result.returncode == 2 and "Traceback" not in result.stderr, (args, result.stderr)
    # before: "webhook on http://127.0.0.1:99999" logged, then it served on no port at all until stopped
    chat = tmp_path / "chat.yaml"
    chat.write_text('clusters: {}\nchatops:\n  generic: {secret_env: CHAT_SECRET}\n'
                    '  allow: [{user: u1, platform: generic, clusters: {"*": [read]}}]\n')
    result = rotation("webhook", "--port", "99999", "-c", str(chat), env={**service, "CHAT_SECRET": "s" * 40})
    assert result.returncode == 2 and "--port" in result.stderr, result.stderr


def test_a_worker_concurrency_below_one_is_a_bad_option(env: dict[str, str], tmp_path: Path, own_redis: RedisServer,
                                                        ca_files: tuple[Path, Path]) -> None:
    service = {**{k: v for k, v in env.items() if k != "ROTATION_STORE"}, "ROTATION_REDIS_URL": own_redis.url}
    # before: Celery's BadParameter traceback in the child, which the supervisor restarted again and again
    result = rotation("worker", "--concurrency", "-1", "-c", str(small_inventory(tmp_path, ca_files)), env=service)
    assert result.returncode == 2 and "--concurrency" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("option", "value"), [("--log-level", "BOGUS"), ("--log-format", "xml")])
def test_an_unknown_log_level_or_format_is_a_bad_option(env: dict[str, str], tmp_path: Path, option: str, value: str,
                                                        ca_files: tuple[Path, Path]) -> None:
    # before: --log-level BOGUS was logging's ValueError traceback (exit 1); --log-format xml silently plain
    service = {**{k: v for k, v in env.items() if k != "ROTATION_STORE"}, "ROTATION_REDIS_URL": "redis://127.0.0.1:1/0"}
    for command in (["worker", "--no-supervise"], ["beat"]):
        result = rotation(*command, option, value, "-c", str(small_inventory(tmp_path, ca_files)), env=service)
        assert result.returncode == 2 and option in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_beat_with_a_schedule_file_it_cannot_create_is_one_line(env: dict[str, str], tmp_path: Path,
                                                               own_redis: RedisServer,
                                                               ca_files: tuple[Path, Path]) -> None:
    service = {**{k: v for k, v in env.items() if k != "ROTATION_STORE"}, "ROTATION_REDIS_URL": own_redis.url}
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    # before: FileExistsError traceback, exit 1
    result = rotation("beat", "--schedule-file", str(a_file / "schedule"), "-c",
                      str(small_inventory(tmp_path, ca_files)), env=service)
    refused(result, "--schedule-file", str(a_file))


def test_a_state_dir_that_is_a_file_is_named(env: dict[str, str], tmp_path: Path, own_redis: RedisServer,
                                             ca_files: tuple[Path, Path]) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    path = str(small_inventory(tmp_path, ca_files))
    # before: NotADirectoryError / FileExistsError tracebacks, exit 1
    refused(rotation("status", "-c", path, env={**env, "ROTATION_STATE_DIR": str(a_file)}), "ROTATION_STATE_DIR")
    service = {**{k: v for k, v in env.items() if k != "ROTATION_STORE"}, "ROTATION_REDIS_URL": own_redis.url,
               "ROTATION_STATE_DIR": str(a_file / "below")}
    refused(rotation("history", "-c", path, env=service), "ROTATION_STATE_DIR")


@pytest.mark.parametrize("command", ["status", "history"])
def test_a_redis_database_the_server_does_not_have_is_named(env: dict[str, str], tmp_path: Path, command: str,
                                                            own_redis: RedisServer,
                                                            ca_files: tuple[Path, Path]) -> None:
    service = {**{k: v for k, v in env.items() if k != "ROTATION_STORE"},
               "ROTATION_REDIS_URL": own_redis.url.rsplit("/", 1)[0] + "/99999"}
    # before: redis.exceptions.ResponseError: DB index is out of range (a traceback, exit 1)
    result = rotation(command, "--json", "-c", str(small_inventory(tmp_path, ca_files)), env=service)
    refused(result, "ROTATION_REDIS_URL", "99999")


@pytest.mark.parametrize("url", ["https://a..b:9443", "https://cluster east:9443", "https://host:9443?x=1#f"])
def test_a_cluster_url_with_no_usable_host_is_refused_at_load(env: dict[str, str], tmp_path: Path, url: str,
                                                              ca_files: tuple[Path, Path]) -> None:
    # before: "a..b" was an idna UnicodeError traceback; the others were dialled (".../host:9443?x=1#f/v1/cluster")
    path = small_inventory(tmp_path, ca_files, url=url)
    refused(rotation("check", "-c", str(path), env={**env, "EAST_PW": "x"}), "clusters.east.url")


@pytest.mark.parametrize(("field", "value"), [("tls_server_name", "a..b"), ("fqdn", "a..b"), ("fqdn", "-x-"),
                                              ("certificates", {"proxy": {"hosts": ["ok.example.com", "*.a..b"]}})])
def test_names_a_certificate_or_handshake_would_carry_are_checked_at_load(
        env: dict[str, str], tmp_path: Path, field: str, value: object, ca_files: tuple[Path, Path]) -> None:
    # before: tls_server_name "a..b" was an idna traceback in every command; a bad fqdn or host went into the
    # SANs of the certificates issued (a dry run passed)
    path = small_inventory(tmp_path, ca_files, **{field: value})
    refused(rotation("check", "-c", str(path), env={**env, "EAST_PW": "x"}), f"clusters.east.{field}")


def test_a_secret_written_where_a_variable_name_goes_is_never_echoed(env: dict[str, str], tmp_path: Path,
                                                                     ca_files: tuple[Path, Path]) -> None:
    # before: "warning: ...password_env: environment variable hunter2!Secret is not set" on every load, in every
    # process's log, and the same as an error when used
    path = small_inventory(tmp_path, ca_files, password_env="hunter2!Secret")
    for args in (["check"], ["config", "check", "--offline", "--json"]):
        result = rotation(*args, "-c", str(path), env=env)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "hunter2" not in result.stdout + result.stderr
        assert "clusters.east.password_env" in result.stderr + result.stdout


@pytest.mark.parametrize("args", [["history", "--json", "--limit", "many"], ["rotate", "--json"],
                                  ["check", "--json", "--cluster"], ["check", "--json", "--no-such-flag"]])
def test_a_usage_error_under_json_is_json_on_stdout_too(env: dict[str, str], args: list[str]) -> None:
    # before: click's usage text on stderr only, stdout empty: a script reading --json learned nothing
    result = rotation(*args, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    error = json.loads(result.stdout)
    assert error["exit_code"] == 2 and error["error"] and error["problems"], error
    assert "Error" in result.stderr  # the human text stays as it was


def test_a_renewal_window_as_long_as_the_certificates_life_is_refused(env: dict[str, str], tmp_path: Path,
                                                                      simulator: ClusterSimulator,
                                                                      ca_files: tuple[Path, Path]) -> None:
    # validity 7d with renew_before 30d: every certificate issued is due at once, so every scan rotated it again
    path = write_inventory(tmp_path / "sim.yaml", simulator, ca_files)
    data = yaml.safe_load(path.read_text())
    data["issuers"]["internal"]["validity"] = "7d"
    path.write_text(yaml.safe_dump(data))
    result = rotation("config", "check", "--offline", "--json", "-c", str(path), env=env)
    refused(result, "renew_before 30d", "issuers.internal.validity")
    assert json.loads(result.stdout)["exit_code"] == 2
