"""docker-compose.yml cannot run here (no Docker engine): check it against the package instead."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main
import yaml

from workers.main import app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def env_names_read_by_the_code() -> set[str]:
    names: set[str] = set()
    for path in [*ROOT.glob("rotation/**/*.py"), *ROOT.glob("workers/**/*.py")]:
        names |= set(re.findall(r'"((?:ROTATION|RS_SIM)_[A-Z0-9_]+)"', path.read_text()))
    return names


def test_every_rotation_service_runs_a_real_entry_point_with_real_options() -> None:
    root = typer.main.get_command(app)
    ours = {name: svc for name, svc in COMPOSE["services"].items() if "command" in svc
            and svc["command"][0] == "rotation"}
    assert {"worker", "beat", "simulator", "webhook"} <= set(ours)
    for name, service in ours.items():
        command = root.commands[service["command"][1]]  # KeyError: not a command of `rotation`
        known = {opt for param in command.params for opt in getattr(param, "opts", [])}
        known |= {opt for param in command.params for opt in getattr(param, "secondary_opts", [])}
        for token in service["command"][2:]:
            if token.startswith("--"):
                assert token in known, f"{name}: `rotation {service['command'][1]}` has no option {token}"


def test_environment_names_match_the_settings() -> None:
    read = env_names_read_by_the_code()
    assert {"ROTATION_REDIS_URL", "ROTATION_CONFIG", "ROTATION_SECRET_KEY"} <= read
    for name, service in COMPOSE["services"].items():
        for key in service.get("environment") or {}:
            if key.startswith(("ROTATION_", "RS_SIM_")):
                assert key in read, f"{name}: {key} is not read anywhere in rotation/ or workers/"


def test_one_beat_and_a_scalable_worker() -> None:
    services = COMPOSE["services"]
    assert services["beat"]["deploy"]["replicas"] == 1
    assert "deploy" not in services["worker"] and "container_name" not in services["worker"]
    assert services["worker"]["environment"]["ROTATION_REDIS_URL"].startswith("redis://redis:")
    assert {"pebble", "dns"} <= {n for n, s in services.items() if "pebble" in s.get("profiles", [])}


def test_a_missing_secret_stops_compose_instead_of_passing_an_empty_one() -> None:
    # `${VAR:-}` handed the webhook an empty signing secret, and a request signed with the empty
    # key queued a rotation; `${VAR:?message}` makes `docker compose up` stop with the message.
    secret_like = re.compile(r"(SECRET|PASSWORD|TOKEN|_KEY)$")
    checked = 0
    for name, service in COMPOSE["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if secret_like.search(key) and not key.startswith("RS_SIM_"):
                assert re.fullmatch(r"\$\{" + key + r":\?[^}]+\}", str(value)), f"{name}: {key}: {value!r}"
                checked += 1
    assert checked >= 4  # ROTATION_SECRET_KEY, RE_EAST_PASSWORD, SLACK_SIGNING_SECRET, CHATOPS_HMAC_SECRET
    webhook = COMPOSE["services"]["webhook"]["environment"]
    assert {"SLACK_SIGNING_SECRET", "CHATOPS_HMAC_SECRET"} <= set(webhook)
