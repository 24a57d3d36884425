"""Helpers for the local processes that benchmarks and the demo start (loopback only): the tests' own."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from tests.support.processes import free_port, wait_for

__all__ = ["free_port", "process_cpu", "run_from_bytecode", "wait_for", "wait_for_stop"]


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


def process_cpu(pid: int) -> float:
    """CPU seconds used so far by a process and its threads (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
