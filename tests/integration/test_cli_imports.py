"""The CLI starts fast because it imports what a command uses, when it runs (issue 17).

Guards, not timings: what is in ``sys.modules`` after importing the command modules, after
``rotation --help`` and after ``rotation check``, each in a fresh interpreter. The figures are
measured by benchmarks/cli_start.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.processes import ROOT
from typer.testing import CliRunner

from rotation.cli.main import COMMANDS, GROUPS

# Loaded by no command module at import and by no `--help`: each costs tens of milliseconds.
HEAVY = ("rich", "httpx", "httpcore", "h11", "pydantic", "pydantic_core", "cryptography", "yaml", "acme", "josepy",
         "requests", "celery", "kombu", "redis", "dns", "uvicorn", "starlette", "prometheus_client")
OURS_HEAVY = ("rotation.config", "rotation.usecases", "rotation.adapters", "rotation.chatops",
              "rotation.simulator.server", "rotation.simulator.cluster", "rotation.simulator.tls",
              "workers.celery_app", "workers.webhook", "workers.tasks")
# `rotation check` reads clusters: it never loads the ACME stack, DNS updates, the pipeline or Celery.
NOT_FOR_CHECK = ("acme", "josepy", "requests", "celery", "kombu", "dns", "uvicorn", "starlette", "prometheus_client",
                 "rotation.adapters.issuers.acme", "rotation.adapters.dns", "rotation.usecases.rotate",
                 "rotation.simulator.server", "workers.celery_app")

# Runs in a fresh interpreter: ARGV through the console script's entry point; at the exit, writes
# the modules loaded by then to the file named by PROBE_OUT (apart from the command's own output).
_PROBE = """
import atexit, json, os, sys
atexit.register(lambda: open(os.environ["PROBE_OUT"], "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["rotation", *sys.argv[1:]]
from workers.main import main
main()
"""


def loaded(names: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)]


def run_probe(args: list[str], out: Path, env: dict[str, str] | None = None
              ) -> tuple[subprocess.CompletedProcess, list[str]]:
    env = {**(env or os.environ), "PROBE_OUT": str(out)}
    result = subprocess.run([sys.executable, "-c", _PROBE, *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    return result, json.loads(out.read_text())


def test_command_modules_import_nothing_heavy_at_top() -> None:
    code = ("import importlib, json, pkgutil, sys, rotation.cli\n"
            "for m in pkgutil.iter_modules(rotation.cli.__path__): importlib.import_module('rotation.cli.' + m.name)\n"
            "import workers.main, rotation.simulator.command\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout)
    assert "rotation.cli.check" in modules and "workers.main" in modules
    assert loaded(modules, HEAVY + OURS_HEAVY) == []


def test_help_lists_every_command_and_loads_nothing_heavy(tmp_path: Path) -> None:
    result, modules = run_probe(["--help"], tmp_path / "modules.json")
    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == [*COMMANDS, "worker", "beat", "metrics", "webhook", *GROUPS]
    assert "Show every managed certificate as each node serves it." in result.stdout  # the docstrings, as before
    assert loaded(modules, HEAVY + OURS_HEAVY) == []


def test_one_command_loads_only_its_own_module(tmp_path: Path) -> None:
    result, modules = run_probe(["secret-key"], tmp_path / "modules.json")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) >= 32  # the key, printed and flushed before the exit
    # (pydantic is loaded: typer converts every option through it; cryptography: the key is Fernet's)
    assert loaded(modules, ("rotation.cli.check", "rotation.cli.policy", "rotation.cli.links", "rotation.cli.history",
                            "rotation.simulator.server", "rich", "httpx")) == []


def test_every_lazy_command_builds_with_its_help() -> None:
    from workers.main import app

    runner = CliRunner()
    for name in [*COMMANDS, *GROUPS]:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert f"rotation {name}" in result.output or f"root {name}" in result.output, (name, result.output)


def test_check_reads_the_cluster_without_the_acme_stack_or_the_pipeline(
    inventory_path: Path, state_dir: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "ROTATION_CONFIG": str(inventory_path)}
    result, modules = run_probe(["check", "--json"], tmp_path / "modules.json", env)
    assert result.returncode in (0, 1), result.stderr  # 1: the simulator's certificates expire within 30 days
    report = json.loads(result.stdout)  # whole: the output is flushed though the collector is off
    assert {row["cert"] for row in report["rows"]} >= {"api", "cm", "proxy"}
    assert all(row["status"] != "unreachable" for row in report["rows"])
    assert "rotation.usecases.check" in modules
    assert loaded(modules, NOT_FOR_CHECK) == []


# `rotation rotate --inline` runs the pipeline here: never the queue (Celery), ACME, DNS updates, or
# httpx's own command line (click, pygments: see workers.main._skip_unused_imports).
NOT_FOR_INLINE = ("celery", "kombu", "workers.celery_app", "workers.queue", "acme", "josepy", "dns",
                  "rotation.adapters.issuers.acme", "rotation.adapters.dns", "pygments")
# `rotation rotate` through the queue submits and follows: the worker runs the pipeline, so the CLI
# loads neither it, the issuers, the REST client nor the TLS probes.
NOT_FOR_QUEUED = ("rotation.usecases.rotate", "rotation.adapters.issuers", "rotation.adapters.cluster",
                  "rotation.adapters.rs", "rotation.adapters.tls", "httpx", "acme", "josepy", "dns")


def test_rotate_inline_loads_neither_the_queue_nor_acme(service_env: dict[str, str], tmp_path: Path) -> None:
    result, modules = run_probe(["rotate", "sim", "metrics_exporter", "--inline", "--json"],
                                tmp_path / "modules.json", service_env)
    assert result.returncode == 0, result.stderr
    (record,) = json.loads(result.stdout)
    assert record["outcome"] == "verified"
    assert "rotation.usecases.rotate.pipeline" in modules and "httpx" in modules
    assert loaded(modules, NOT_FOR_INLINE) == []


def test_rotate_printed_into_a_pipe_loads_no_rich(service_env: dict[str, str], tmp_path: Path) -> None:
    # steps, outcome and the endpoint table, as rich would print them there (tests/unit/test_plain_output.py);
    # at 80 columns (no terminal, no COLUMNS) the table is narrowed and its labels wrapped, without rich too
    result, modules = run_probe(["rotate", "sim", "metrics_exporter", "--inline"], tmp_path / "modules.json",
                                {k: v for k, v in service_env.items() if k != "COLUMNS"})
    assert result.returncode == 0, result.stderr
    assert "  sim/metrics_exporter verify ok" in result.stderr
    header, *rows = result.stdout.splitlines()[1:]
    assert header.split() == ["endpoint", "before", "after"] and rows
    assert loaded(modules, ("rich", *NOT_FOR_INLINE)) == []


def test_rotate_through_the_queue_loads_no_pipeline(service_env: dict[str, str], tmp_path: Path) -> None:
    # --no-wait: submitted and returned (no worker needed); following adds no import the guard names
    result, modules = run_probe(["rotate", "sim", "metrics_exporter", "--no-wait", "--json"],
                                tmp_path / "modules.json", service_env)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["queued"]) == 1
    assert "workers.queue" in modules and "celery" in modules
    assert loaded(modules, NOT_FOR_QUEUED) == []
    # printed into a pipe: no rich either (what a followed rotation prints is checked inline, above)
    result, modules = run_probe(["rotate", "sim", "cm", "--no-wait"], tmp_path / "modules.json", service_env)
    assert result.returncode == 0, result.stderr
    assert loaded(modules, ("rich", *NOT_FOR_QUEUED)) == []
