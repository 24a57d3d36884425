"""docker-compose.yml cannot run here (no Docker engine): check it against the package instead, and run
its healthchecks (deploy/healthcheck.py) against real Redis, a real metrics server and a real worker."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer.main
import yaml
from support.processes import RedisServer, free_port, wait_for

from rotation.config import load_inventory
from rotation.core.errors import ConfigError
from workers.main import app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
HEALTHCHECK = ROOT / "deploy" / "healthcheck.py"
OURS = {name: svc for name, svc in SERVICES.items() if svc.get("image") == "rotation:latest"}
# Which services read the secrets the README's inventory names, by the field that names them:
# rotations (workers) use cluster passwords, issuer secrets and the notification URL; the webhook,
# the chat platforms' secrets. Anything else has no business holding them.
NEEDS = {"password_env": "worker", "ca_key_password_env": "worker", "eab_hmac_key_env": "worker",
         "url_env": "worker", "signing_secret_env": "webhook", "token_env": "webhook", "secret_env": "webhook"}


def env_names_read_by_the_code() -> set[str]:
    names: set[str] = set()
    for path in [*ROOT.glob("rotation/**/*.py"), *ROOT.glob("workers/**/*.py")]:
        names |= set(re.findall(r'"((?:ROTATION|RS_SIM)_[A-Z0-9_]+)"', path.read_text()))
    return names


def option(service: str, name: str) -> str:
    command = SERVICES[service]["command"]
    return command[command.index(name) + 1]


def mounts(service: str) -> dict[str, tuple[str, bool]]:
    """target -> (source, read-only) of a service's short-syntax volumes."""
    found = {}
    for volume in SERVICES[service].get("volumes") or []:
        source, target, *mode = volume.split(":")
        found[target] = (source, mode == ["ro"])
    return found


def healthcheck_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compose_healthcheck", HEALTHCHECK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_healthcheck(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(HEALTHCHECK), *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_every_rotation_service_runs_a_real_entry_point_with_real_options() -> None:
    root = typer.main.get_command(app)
    ours = {name: svc for name, svc in SERVICES.items() if "command" in svc and svc["command"][0] == "rotation"}
    assert {"worker", "beat", "simulator", "webhook", "metrics", "sim-worker", "sim-beat"} <= set(ours)
    assert set(ours) == set(OURS)
    for name, service in ours.items():
        command = root.commands[service["command"][1]]  # KeyError: not a command of `rotation`
        known = {opt for param in command.params for opt in getattr(param, "opts", [])}
        known |= {opt for param in command.params for opt in getattr(param, "secondary_opts", [])}
        for token in service["command"][2:]:
            if token.startswith("--"):
                assert token in known, f"{name}: `rotation {service['command'][1]}` has no option {token}"


def test_environment_names_match_the_settings() -> None:
    read = env_names_read_by_the_code()
    assert {"ROTATION_REDIS_URL", "ROTATION_CONFIG", "ROTATION_SECRET_KEY", "RS_SIM_PASSWORD"} <= read
    for name, service in SERVICES.items():
        for key in service.get("environment") or {}:
            if key.startswith(("ROTATION_", "RS_SIM_")):
                assert key in read, f"{name}: {key} is not read anywhere in rotation/ or workers/"


def test_one_beat_and_a_scalable_worker() -> None:
    assert SERVICES["beat"]["deploy"]["replicas"] == 1
    assert "deploy" not in SERVICES["worker"] and "container_name" not in SERVICES["worker"]
    assert SERVICES["worker"]["environment"]["ROTATION_REDIS_URL"].startswith("redis://redis:")
    assert {"pebble", "dns"} <= {n for n, s in SERVICES.items() if "pebble" in s.get("profiles", [])}
    # scaled workers need distinct Celery names: %h is each container's own hostname
    assert "%h" in option("worker", "--hostname")


def test_only_the_secret_key_stops_compose_and_an_empty_secret_is_refused_by_its_reader(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Compose interpolates every service, profiles or not, before it starts any: a `${X:?}` for a
    # chat platform stopped `docker compose --profile simulator up` and any deployment without that
    # platform. So only ROTATION_SECRET_KEY (every process needs it) is required; the rest are empty
    # when unset, never a made-up default, and whatever reads one refuses it empty.
    secret_like = re.compile(r"(SECRET|PASSWORD|TOKEN|_KEY|HMAC)$")
    checked = set()
    for name, service in SERVICES.items():
        for key, value in (service.get("environment") or {}).items():
            if not secret_like.search(key):
                continue
            checked.add(key)
            if key == "ROTATION_SECRET_KEY":
                assert re.fullmatch(r"\$\{ROTATION_SECRET_KEY:\?[^}]+\}", str(value)), f"{name}: {value!r}"
                continue
            assert value == "${" + key + ":-}", f"{name}: {key}: {value!r}"
            # every *_env secret goes through one reader; a cluster password is the common case
            inventory = tmp_path / f"{key}.yaml"
            inventory.write_text(yaml.safe_dump({"clusters": {"east": {
                "url": "https://cluster.east.example.com:9443", "fqdn": "cluster.east.example.com", "username": "admin",
                "password_env": key}}}))
            monkeypatch.setenv(key, "")
            with pytest.raises(ConfigError, match=f"environment variable {key} is empty"):
                load_inventory(inventory).cluster("east").password("east")
    assert {"ROTATION_SECRET_KEY", "RE_EAST_PASSWORD", "CA_KEY_PASSWORD", "ACME_EAB_HMAC", "SLACK_SIGNING_SECRET",
            "MM_COMMAND_TOKEN", "CHATOPS_HMAC_SECRET", "RS_SIM_PASSWORD"} <= checked


def test_every_secret_the_readme_names_reaches_the_services_that_use_it_and_no_other() -> None:
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"\b([a-z0-9_]+_env): ([A-Z][A-Z0-9_]+)", readme))
    assert {"MM_COMMAND_TOKEN", "CA_KEY_PASSWORD", "NOTIFY_WEBHOOK_URL", "RS_SIM_PASSWORD"} <= {v for _, v in named}
    for field, variable in named:
        # KeyError: the README names a new kind of secret; say who needs it
        users = {"simulator", "sim-worker", "sim-beat"} if variable.startswith("RS_SIM_") else {NEEDS[field]}
        for service in set(OURS):
            holds = variable in (SERVICES[service].get("environment") or {})
            assert holds == (service in users), f"{service}: {variable} ({field})"
    for service in ("worker", "beat", "webhook", "sim-worker", "sim-beat"):
        assert "ROTATION_SECRET_KEY" in SERVICES[service]["environment"]
    # files: the README's tsig_secret_file lives in /run/secrets, a read-only mount of the workers only
    secret_files = set(re.findall(r"_file: (/run/secrets/[\w.-]+)", readme))
    assert "/run/secrets/tsig" in secret_files
    assert mounts("worker")["/run/secrets"] == ("./secrets", True)
    assert all("/run/secrets" not in mounts(name) for name in set(OURS) - {"worker"})
    # deploy/env.example lists exactly what the compose file reads from the environment
    example = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (ROOT / "deploy" / "env.example").read_text(), re.M))
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_TEXT))
    assert interpolated <= example and example - interpolated <= {"COMPOSE_PROFILES"}


def test_the_simulator_profile_feeds_its_own_worker_and_beat() -> None:
    sim = SERVICES["simulator"]
    assert sim["profiles"] == ["simulator"]
    assert int(option("simulator", "--nodes")) == 3 and "simulated 3-node RS cluster" in COMPOSE_TEXT
    assert option("simulator", "--first-address").startswith("127.")
    volume, (source, read_only) = next(iter(mounts("simulator").items()))
    assert source in COMPOSE["volumes"] and not read_only
    written, state = option("simulator", "--write-config"), option("simulator", "--state-dir")
    # the inventory names files in the state dir and the pki/ dir beside it: all on the shared volume
    assert written.startswith(volume + "/") and state.startswith(volume + "/")
    production_db = SERVICES["worker"]["environment"]["ROTATION_REDIS_URL"].rsplit("/", 1)[1]
    for name in ("sim-worker", "sim-beat"):
        service = SERVICES[name]
        assert service["profiles"] == ["simulator"]
        assert service["network_mode"] == "service:simulator"  # the nodes' 127.x addresses are there
        assert mounts(name)[volume] == (source, True)
        env = service["environment"]
        assert env["ROTATION_CONFIG"] == written
        assert env["RS_SIM_PASSWORD"] == sim["environment"]["RS_SIM_PASSWORD"]
        assert env["ROTATION_REDIS_URL"].startswith("redis://redis:")
        assert env["ROTATION_REDIS_URL"].rsplit("/", 1)[1] != production_db  # its own queue, records, beat
        assert service["depends_on"]["simulator"]["condition"] == "service_healthy"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "sim-webhook" not in SERVICES  # a webhook needs a chatops section the simulator cannot invent


def test_every_long_running_service_has_a_healthcheck_made_of_real_commands() -> None:
    assert "COPY deploy/healthcheck.py ./deploy/healthcheck.py" in DOCKERFILE and "WORKDIR /app" in DOCKERFILE
    parser = healthcheck_module().parser()
    for name, service in SERVICES.items():
        if "pebble" in service.get("profiles", []):
            continue  # third-party test tools of the pebble profile
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert float(check["timeout"].rstrip("s")) < float(check["interval"].rstrip("s"))
        if name == "redis":
            assert check["test"] == ["CMD-SHELL", "redis-cli ping | grep -q PONG"]
            continue
        assert check["test"][:3] == ["CMD", "python", "/app/deploy/healthcheck.py"], name
        args = parser.parse_args(check["test"][3:])  # SystemExit: not a check the script has
        if args.check == "http":
            assert args.url == f"http://127.0.0.1:{option(name, '--port')}/" + {"webhook": "healthz",
                                                                               "metrics": "metrics"}[name]
        elif args.check == "worker":
            assert args.node == option(name, "--hostname")
        elif args.check == "inventory":
            assert args.file == option(name, "--write-config")
        else:
            assert args.check == "redis" and "beat" in name  # beat's dependency is Redis
    assert 'Route("/healthz"' in (ROOT / "workers" / "webhook" / "app.py").read_text()


def test_the_image_user_owns_its_volumes_and_can_be_the_owner_of_the_config() -> None:
    uid = re.search(r"^ARG ROTATION_UID=(\d+)$", DOCKERFILE, re.M)
    gid = re.search(r"^ARG ROTATION_GID=(\d+)$", DOCKERFILE, re.M)
    assert uid and gid
    assert re.search(r"^USER \$\{ROTATION_UID\}:\$\{ROTATION_GID\}$", DOCKERFILE, re.M)
    args = {"ROTATION_UID": f"${{ROTATION_UID:-{uid[1]}}}", "ROTATION_GID": f"${{ROTATION_GID:-{gid[1]}}}"}
    seeded = set(re.search(r'chown "\$ROTATION_UID:\$ROTATION_GID" ([/\w ]+)', DOCKERFILE)[1].split())
    for name, service in OURS.items():
        # one pair of variables for the build (volume owners) and the run (the process): set to the
        # owner of ./config, it reads the 0600 files `rotation ca init` writes there
        assert service["user"] == f"{args['ROTATION_UID']}:{args['ROTATION_GID']}", name
        assert service["build"]["args"] == args, name
        for target, (source, read_only) in mounts(name).items():
            if source.startswith("./"):
                assert read_only, f"{name}: {source} must be read-only"
            else:
                assert source in COMPOSE["volumes"] and target in seeded, f"{name}: {target} is not the user's"
    example = (ROOT / "deploy" / "env.example").read_text()
    assert f"ROTATION_UID={uid[1]}" in example and f"ROTATION_GID={gid[1]}" in example
    # the build context is an allow-list: .env, ./config and ./secrets never reach the daemon
    ignore = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    copied = set(re.findall(r"^COPY (.+) \S+$", DOCKERFILE, re.M))
    assert ignore[0] == "*"
    assert {line[1:].rstrip("/") for line in ignore if line[0] == "!"} == {p for c in copied for p in c.split()}


def test_healthchecks_tell_a_live_service_from_a_dead_one(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    port = free_port()
    env = {**os.environ, "ROTATION_STORE": "redis", "ROTATION_REDIS_URL": redis.url}
    metrics = subprocess.Popen([sys.executable, "-m", "workers.main", "metrics", "--port", str(port)], cwd=ROOT,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        assert run_healthcheck("redis", env={"ROTATION_REDIS_URL": redis.url}).returncode == 0
        wait_for(lambda: run_healthcheck("http", url).returncode == 0, 30, what="rotation metrics",
                 alive=lambda: metrics.poll() is None)
        shell = SERVICES["redis"]["healthcheck"]["test"][1].replace("redis-cli", f"redis-cli -p {redis.port}")
        assert subprocess.run(["sh", "-c", shell], timeout=30).returncode == 0
        redis.stop()
        down = run_healthcheck("--timeout", "2", "redis", env={"ROTATION_REDIS_URL": redis.url})
        assert down.returncode == 1 and down.stdout.startswith("unhealthy:")
        assert str(redis.port) not in down.stdout  # never the URL: it may carry a password
        assert subprocess.run(["sh", "-c", shell], timeout=30).returncode != 0
        scrape = run_healthcheck("http", url)  # metrics are read from Redis: 500 without it
        assert scrape.returncode == 1 and "HTTP 500" in scrape.stdout
    finally:
        metrics.terminate()
        metrics.wait(10)
        redis.stop()
    assert run_healthcheck("--timeout", "2", "http", url).returncode == 1


def test_worker_healthcheck_pings_the_worker_through_the_broker(start_service, service_env: dict[str, str]) -> None:
    start_service("worker", "--hostname", "compose-hc@%h", "--concurrency", "1")
    alive = run_healthcheck("worker", "compose-hc@%h", env=service_env)
    assert alive.returncode == 0, alive.stdout
    absent = run_healthcheck("--timeout", "1", "worker", "nobody@%h", env=service_env)
    assert absent.returncode == 1 and "did not answer" in absent.stdout
