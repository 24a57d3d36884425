"""Live progress of a long `rotation check`: drawn on a terminal's stderr, absent under --json (stdout stays JSON)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cluster import start_simulator, write_inventory

from rotation.simulator import ClusterSimulator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def slow_cluster(tmp_path: Path, ca_files: tuple[Path, Path]) -> Iterator[tuple[ClusterSimulator, Path]]:
    # Every REST answer 0.4 s late: a check reads several one after the other, so it takes more than 1 s.
    sim = start_simulator(tmp_path, nodes=2, api_latency=0.4)
    try:
        yield sim, write_inventory(tmp_path / "inv.yaml", sim, ca_files)
    finally:
        sim.stop()


def _run_on_a_terminal(*args: str) -> tuple[int, str, str]:
    """The CLI with stderr on a pseudo-terminal (120 columns) and stdout on a pipe: (exit code, stdout, terminal)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    seen = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed: the process ended
                return
            if not chunk:
                return
            seen.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        process = subprocess.run([sys.executable, "-m", "workers.main", *args], cwd=ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, timeout=120)
    finally:
        os.close(slave)
    reader.join(10)
    os.close(master)
    return process.returncode, process.stdout.decode(), seen.decode(errors="replace")


def test_a_long_check_shows_progress_on_the_terminal(slow_cluster: tuple[ClusterSimulator, Path]) -> None:
    _, inventory = slow_cluster
    code, stdout, terminal = _run_on_a_terminal("check", "-c", str(inventory))
    assert code == 1, terminal  # the certificates expire in 5 days: due
    assert "checking" in terminal and "handshakes" in terminal
    assert "Certificates as served" in stdout and "checking" not in stdout


def test_json_output_stays_clean_and_no_progress_is_drawn(slow_cluster: tuple[ClusterSimulator, Path]) -> None:
    _, inventory = slow_cluster
    code, stdout, terminal = _run_on_a_terminal("check", "-c", str(inventory), "--json")
    assert code == 1
    assert json.loads(stdout)["exit_code"] == 1
    assert "checking" not in terminal


def test_rotate_all_through_the_queue_shows_progress_on_the_terminal(service_env: dict[str, str], start_service,
                                                                     simulator: ClusterSimulator,
                                                                     inventory_path: Path) -> None:
    simulator.slow(0.3)  # every REST answer late: the rotations take more than the 1 s before the bar is drawn
    # Real worker and Redis: the command queues, then follows every rotation. A thread for each of the
    # five certificates: they rotate side by side (one wave of ~2 s, not two).
    start_service("worker", "--concurrency", "5")
    code, stdout, terminal = _run_on_a_terminal("rotate", "sim", "--all", "-c", str(inventory_path))
    assert code == 0, terminal
    assert "rotating" in terminal and "ended" in terminal  # the bar: rotations ended of those queued
    assert "rotating" not in stdout and stdout.count(" verified (rotation ") >= 2  # each rotation's result
    code, stdout, terminal = _run_on_a_terminal("rotate", "sim", "--all", "-c", str(inventory_path), "--json")
    assert code == 0 and len(json.loads(stdout)) >= 2 and "rotating" not in terminal  # no bar under --json
