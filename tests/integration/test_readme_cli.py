"""The README's command table and the CLI agree (issue 18, item 7): every command and flag the table
names exists and shows in that command's ``--help``, and every default it writes out is the real one.

In the table, ``[--port 8088]`` documents a default (a value starting with a lower-case letter or a
digit), ``[--cluster X]`` or ``[--trust CA.pem]`` a placeholder (upper case), ``[--x a|b]`` the
choices with the default first."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from workers.main import app

ROOT = Path(__file__).resolve().parents[2]
ROOT_COMMAND = typer.main.get_command(app)
FLAG = re.compile(r"(?<![\w-])(--?[a-z][a-z-]*)(?: ((?![-\[])[^\s\[\]]+))?")


def table_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    return [row.split("`")[1].replace("\\|", "|") for row in section.splitlines() if row.startswith("| `rotation")]


def resolve(usage: str) -> tuple[list[str], Any, str]:
    """(command words, the click command, the rest of the usage) of ``rotation word word ARGS...``."""
    tokens = usage.split()
    assert tokens[0] == "rotation"
    words: list[str] = []
    command: Any = ROOT_COMMAND  # typer's own click: commands are read by what they have
    for token in tokens[1:]:
        if not (hasattr(command, "commands") and re.fullmatch(r"[a-z][a-z-]*", token)):
            break
        found = command.commands.get(token)
        assert found is not None, f"README names `rotation {' '.join([*words, token])}`, which does not exist"
        words.append(token)
        command = found
    return words, command, " ".join(tokens[1 + len(words):])


def help_text(words: list[str]) -> str:
    result = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "400"}, terminal_width=400)
    assert result.exit_code == 0, result.output
    return result.output


def option(command: Any, flag: str) -> Any:
    return next((p for p in command.params if flag in (*p.opts, *getattr(p, "secondary_opts", ()))), None)


def same_default(documented: str, default: object) -> bool:
    if isinstance(default, bool) or default is None:
        return False
    value = getattr(default, "value", default)  # an enum's value, as the help shows it
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(documented) == float(value)
        except ValueError:
            return False
    return documented == str(value)


@pytest.mark.parametrize("usage", table_commands(), ids=lambda usage: " ".join(usage.split()[:3]))
def test_every_documented_command_and_flag_exists_with_its_default(usage: str) -> None:
    words, command, rest = resolve(usage)
    shown = help_text(words)
    flags = FLAG.findall(rest)
    assert flags or not rest.strip(" ."), usage
    for flag, value in flags:
        param = option(command, flag)
        assert param is not None, f"`rotation {' '.join(words)}` has no option {flag} (README: {usage})"
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", shown), f"{flag} not in --help of {words}"
        if not value or value[0].isupper() or value == "...":
            continue  # a flag, or a placeholder
        documented = value.split("|")[0]  # choices: the default first
        assert same_default(documented, param.default), (
            f"README: `rotation {' '.join(words)} {flag} {value}`, but the default is {param.default!r}")


def test_the_table_covers_every_command() -> None:
    documented = {tuple(resolve(usage)[0]) for usage in table_commands()}

    def leaves(group: Any, prefix: tuple[str, ...]) -> set[tuple[str, ...]]:
        found = set()
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                found |= leaves(command, (*prefix, name))
            else:
                found.add((*prefix, name))
        return found

    assert leaves(ROOT_COMMAND, ()) <= documented, leaves(ROOT_COMMAND, ()) - documented


def test_the_parser_reads_defaults_and_placeholders() -> None:
    # the test's own reading of a row, so that a row it misreads cannot pass unnoticed
    assert FLAG.findall("[--port 8088] [--cluster X] [--all] [-c F] [--x a|b]") == [
        ("--port", "8088"), ("--cluster", "X"), ("--all", ""), ("-c", "F"), ("--x", "a|b")]
    words, command, _ = resolve("rotation ca init [--dir .]")
    assert words == ["ca", "init"] and option(command, "--force") is not None
    assert not same_default("2", 1) and same_default("5", 5.0) and same_default("none", "none")


@pytest.mark.parametrize("command", [["check"], ["links"], ["policy", "audit"]])
def test_a_fleet_command_on_an_inventory_without_clusters_exits_2(command: list[str], tmp_path: Path) -> None:
    # README, "Commands": nothing read is not "all fine" (an empty file, ROTATION_CONFIG pointing elsewhere)
    inventory = tmp_path / "rotation.yaml"
    inventory.write_text("renew_before: 30d\n")
    result = CliRunner().invoke(app, [*command, "-c", str(inventory)])
    assert result.exit_code == 2, result.output
    assert "no clusters in the inventory" in result.output


def test_history_shows_who_asked(state_dir: Path) -> None:
    # README "Try it": `rotation history --cluster sim` shows "the rotation: who asked, old -> new fingerprint,
    # outcome"; the table had no column for who asked
    from datetime import UTC, datetime

    from support.clock import FakeClock

    from rotation.adapters.state.local import LocalState
    from rotation.core.model import Outcome, RotationRecord

    when = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    LocalState(state_dir, FakeClock(when)).save(RotationRecord(
        id="r1", cluster="sim", cert_name="proxy", trigger="cli", started_at=when, finished_at=when,
        outcome=Outcome.VERIFIED, old_fingerprint="a" * 64, new_fingerprint="b" * 64, requested_by="cli:alice"))
    result = CliRunner().invoke(app, ["history"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    row = r"│ sim\s+│ proxy\s+│ cli\s+│ cli:alice\s+│ verified\s+│ a{16}\s+│ b{16}"
    assert re.search(row, result.stdout), result.stdout


def test_the_table_names_every_option_of_each_command() -> None:
    # the reverse of the first test: an option the CLI has and the README never names is found here
    shell_only = {"--help", "--install-completion", "--show-completion"}
    for usage in table_commands():
        words, command, rest = resolve(usage)
        named = {flag for flag, _ in FLAG.findall(rest)}
        for param in command.params:
            flags = {*param.opts, *getattr(param, "secondary_opts", ())}
            if getattr(param, "param_type_name", "") == "option" and not flags & (named | shell_only):
                raise AssertionError(f"`rotation {' '.join(words)}` has {param.opts[0]}; README's row does not name it")


def test_the_service_table_documents_every_variable_the_code_reads_with_its_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from rotation.config import ServiceSettings
    from rotation.core.durations import parse_duration

    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## The service\n", 1)[1].split("\n- **Scan**", 1)[0]
    documented: dict[str, str] = {}
    for row in section.splitlines():
        cells = [c.strip() for c in row.split("|")[1:-1]]
        if len(cells) == 3 and cells[0].startswith("`ROTATION_"):
            names = re.findall(r"`(ROTATION_[A-Z_]+)`", cells[0])
            defaults = [d.strip(" `") for d in cells[1].split("/")] if len(names) > 1 else [cells[1].strip("`")]
            documented |= dict(zip(names, defaults if len(defaults) == len(names) else [cells[1]] * len(names),
                                   strict=True))
    code = "\n".join(p.read_text() for folder in ("rotation", "workers", "schedules", "deploy")
                     for p in (ROOT / folder).rglob("*.py"))
    assert set(documented) == set(re.findall(r"[\"'](ROTATION_[A-Z_]+)[\"']", code))

    for name in [n for n in os.environ if n.startswith("ROTATION_")]:
        monkeypatch.delenv(name)
    settings = ServiceSettings.from_env()
    durations = {"ROTATION_SCAN_INTERVAL": settings.scan_interval, "ROTATION_JITTER": settings.rotation_jitter,
                 "ROTATION_BACKOFF_BASE": settings.backoff_base, "ROTATION_BACKOFF_MAX": settings.backoff_max,
                 "ROTATION_LOCK_LEASE": settings.lock_lease, "ROTATION_BEAT_LEASE": settings.beat_lease,
                 "ROTATION_TASK_TIME_LIMIT": settings.task_time_limit,
                 "ROTATION_VISIBILITY_TIMEOUT": settings.visibility_timeout}
    for name, default in durations.items():
        assert parse_duration(documented[name]) == default, (name, documented[name], default)
    assert documented["ROTATION_REDIS_URL"] == settings.redis_url
    assert documented["ROTATION_STORE"] == settings.store
    assert int(documented["ROTATION_POLICY_AUDIT_HOUR"]) == settings.policy_audit_hour


def test_the_readme_names_every_inventory_key() -> None:
    import typing

    from pydantic import BaseModel

    from rotation.config.inventory import Inventory

    readme = (ROOT / "README.md").read_text()
    missing: list[str] = []
    seen: set[type] = set()

    def models(annotation: Any) -> list[type[BaseModel]]:
        found = [annotation] if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []
        return found + [m for arg in typing.get_args(annotation) for m in models(arg)]

    def walk(model: type[BaseModel], where: str) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():
            if field.exclude:
                continue
            if not re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", readme):
                missing.append(f"{where}{name}")
            for sub in models(field.annotation):
                walk(sub, f"{where}{name}.")

    walk(Inventory, "")
    assert not missing, f"inventory keys the README never names: {missing}"
