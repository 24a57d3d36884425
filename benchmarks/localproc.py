"""Helpers for the local processes that benchmarks and the demo start (loopback only): the tests' own."""

from __future__ import annotations

from pathlib import Path

from tests.support.processes import free_port, wait_for

__all__ = ["free_port", "run_from_bytecode", "wait_for"]


def run_from_bytecode(env: dict[str, str], folder: Path) -> dict[str, str]:
    """ENV for a command that should run as an installed package does: from bytecode cached under FOLDER.

    Warm-up runs fill the cache; later runs read it. Without this, PYTHONDONTWRITEBYTECODE=1 (set in
    some sessions) recompiles every module of the checkout on each run, which is not what users pay.
    """
    env = dict(env)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(folder)
    return env
