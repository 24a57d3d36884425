"""README "Try it in five minutes", run literally: the commands of its ``sh`` block, one bash session,
from the simulator to a rotation through the queue (issue 18, item 3). Only what the section says
may be set is set: ``REDIS_PORT`` (this test's own Redis) and ``RS_SIM_FIRST_ADDRESS`` (free 127.x
addresses); every command's exit code must be the one its comment promises (``# exit N``), else 0."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from support.cluster import free_loopback_base
from support.processes import RedisServer

ROOT = Path(__file__).resolve().parents[2]
MARK = "@@readme-rc"


def trial_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Try it in five minutes\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the section has no ```sh block"
    return [line for line in block[1].splitlines() if line.strip()]


def promised_exit_code(command: str) -> int:
    said = re.search(r"#\s*exit (\d)\b", command)
    return int(said[1]) if said else 0


def test_the_readme_trial_runs_as_written(tmp_path: Path) -> None:
    commands = trial_commands()
    assert any(c.startswith("rotation simulator") and "--write-config" in c for c in commands)
    assert any(re.match(r"rotation rotate \S+ \S+\s+#", c) for c in commands)  # through the queue
    # after each command, its exit code on a line of its own (a comment cannot swallow it)
    script = "".join(f'{command}\necho "{MARK} {n} $?"\n' for n, command in enumerate(commands))
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    base = free_loopback_base()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ROTATION_", "RS_SIM_"))}
    env |= {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "COLUMNS": "250", "REDIS_PORT": str(redis.port), "RS_SIM_FIRST_ADDRESS": base,
            "HOME": str(tmp_path / "home"), "XDG_STATE_HOME": str(tmp_path / "home" / "state")}
    work = tmp_path / "work"
    work.mkdir()
    shell = subprocess.Popen(["bash", "-c", script], cwd=work, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = shell.communicate(timeout=300)
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
        try:  # the background jobs, should `kill %1 %2` not have reached them
            os.killpg(shell.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        redis.stop()
    codes = {int(n): int(rc) for n, rc in re.findall(rf"^{MARK} (\d+) (\d+)$", output, re.M)}
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in (work / "trial").glob("*.log"))
    assert len(codes) == len(commands), output + logs
    for n, command in enumerate(commands):
        assert codes[n] == promised_exit_code(command), f"{command!r} exited {codes[n]}\n{output}{logs}"

    # what the trial claims: the queued proxy rotation verified; afterwards check shows proxy ok on
    # every node and the other four still due
    def said_by(word: str) -> str:
        n = next(n for n, c in enumerate(commands) if c.startswith(f"rotation {word}") and "#" in c
                 and "--dry-run" not in c)
        return output.split(f"{MARK} {n - 1} ")[1].split(f"{MARK} {n} ")[0]

    assert re.search(r"sim/proxy verified", said_by("rotate")), output
    assert re.search(r"│ sim\s+│ proxy\s+│.*│ verified\s+│", said_by("history")), output
    last_check = output.split(f"{MARK} {len(commands) - 3} ")[1]
    rows = re.findall(r"│ sim\s+│ (\w+)\s+│.*│ (ok|due)\b", last_check)
    assert {cert for cert, status in rows if status == "ok"} == {"proxy"}, last_check
    assert {cert for cert, status in rows if status == "due"} == {"cm", "api", "syncer", "metrics_exporter"}
