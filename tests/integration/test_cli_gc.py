"""A short command runs without the cyclic garbage collector (workers/main.py); a rotation, which can
run or follow for minutes, turns it back on. Observed in a fresh interpreter through the console
script's entry point: whether the collector is on when the command ends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.processes import ROOT

_PROBE = """
import atexit, gc, os, sys
atexit.register(lambda: open(os.environ["PROBE_OUT"], "w").write(str(gc.isenabled())))
sys.argv = ["rotation", *sys.argv[1:]]
from workers.main import main
main()
"""


def gc_at_exit(args: list[str], out: Path) -> tuple[subprocess.CompletedProcess, bool]:
    env = {**os.environ, "PROBE_OUT": str(out)}
    result = subprocess.run([sys.executable, "-c", _PROBE, *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    return result, out.read_text() == "True"


def test_a_rotation_collects_garbage_a_short_command_does_not(inventory_path: Path, state_dir: Path,
                                                               tmp_path: Path) -> None:
    result, enabled = gc_at_exit(["status", "-c", str(inventory_path)], tmp_path / "status")
    assert result.returncode == 0, result.stderr
    assert enabled is False

    result, enabled = gc_at_exit(["rotate", "sim", "cm", "--inline", "-c", str(inventory_path), "--json"],
                                 tmp_path / "rotate")
    assert result.returncode == 0, result.stderr
    assert enabled is True


def test_queueing_without_following_stays_short(service_env: dict[str, str], inventory_path: Path,
                                                tmp_path: Path) -> None:
    result, enabled = gc_at_exit(["rotate", "sim", "cm", "--no-wait", "-c", str(inventory_path)], tmp_path / "q")
    assert result.returncode == 0, result.stderr
    assert enabled is False


_EXIT_PROBE = """
import os, sys, threading
real_exit = os._exit
def recorded_exit(code):
    open(os.environ["PROBE_OUT"], "w").write(f"{code} " + ",".join(
        sorted(t.name for t in threading.enumerate() if t is not threading.main_thread())))
    real_exit(code)
os._exit = recorded_exit
sys.argv = ["rotation", *sys.argv[1:]]
from workers.main import main
main()
"""


def test_an_inline_rotation_ends_without_teardown_though_its_lease_renewer_thread_runs(
        service_env: dict[str, str], inventory_path: Path, tmp_path: Path) -> None:
    # The lease renewer is a daemon thread: the interpreter would not wait for it, so the short exit applies.
    out = tmp_path / "exit"
    result = subprocess.run([sys.executable, "-c", _EXIT_PROBE, "rotate", "sim", "cm", "--inline", "-c",
                             str(inventory_path), "--json"], cwd=ROOT, env={**os.environ, "PROBE_OUT": str(out)},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert '"outcome": "verified"' in result.stdout  # the output was flushed before the short exit
    code, threads = out.read_text().split(" ", 1)
    assert code == "0" and "lease renewer" in threads.split(",")
