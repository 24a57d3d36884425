"""Helpers for the local processes that benchmarks and the demo start (loopback only): the tests' own."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from tests.support.processes import free_port, wait_for

__all__ = ["free_port", "run_from_bytecode", "wait_for", "wait_for_stop"]


def run_from_bytecode(env: dict[str, str], folder: Path) -> dict[str, str]:
    """ENV for a command that should run as an installed package does: from bytecode cached under FOLDER.

    Warm-up runs fill the cache; later runs read it. Without this, PYTHONDONTWRITEBYTECODE=1 (set in
    some sessions) recompiles every module of the checkout on each run, which is not what users pay.
    """
    env = dict(env)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(folder)
    return env


def wait_for_stop() -> None:
    """Block a benchmark's helper process until SIGTERM or SIGINT: the parent ends it that way."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
