"""Helpers for the local processes that benchmarks and the demo start (loopback only): the tests' own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.support.processes import RedisServer, free_port, wait_for

__all__ = ["RedisServer", "free_port", "process_cpu", "run_from_bytecode", "start_fleet", "start_redis", "wait_for",
           "wait_for_stop"]

ROOT = Path(__file__).resolve().parent.parent


def start_redis(directory: Path) -> RedisServer:
    """A redis-server of the benchmark's own (the tests' ``RedisServer``: a free loopback port, no persistence),
    started and answering. Its ``process`` is the one to stop."""
    server = RedisServer(directory)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


def start_fleet(directory: Path, *, clusters: int, nodes: int, delay: float, log: Path | None = None,
                timeout: float = 120) -> subprocess.Popen:
    """``benchmarks/fleet.py`` (simulated clusters, loopback only) in a session of its own, once it wrote
    ``directory/rotation.yaml``; its output goes to ``log`` (default: nowhere). Stop it with SIGTERM (to its
    process or its process group)."""
    with open(log if log is not None else os.devnull, "wb") as out:
        fleet = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "fleet.py"), "--clusters", str(clusters),
                                  "--nodes", str(nodes), "--delay", str(delay), "--out", str(directory)],
                                 cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: (directory / "ready").exists(), timeout, what="the simulated fleet",
                 alive=lambda: fleet.poll() is None)
    except BaseException:
        os.killpg(fleet.pid, signal.SIGTERM)
        fleet.wait(30)
        raise
    return fleet


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
