"""`make demo`: the service rotating a simulated cluster's certificates, with nothing by hand.

Starts (and always stops) a private redis-server, a 3-node simulator whose certificates expire in
5 days, a worker and beat with a 3 s scan interval; beat finds the certificates, the worker rotates
them, and the demo prints each certificate's old and new fingerprint as every node serves it.
Everything listens on loopback only.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.localproc import free_port, wait_for  # noqa: E402

WORK = ROOT / ".demo"
ROTATION = [sys.executable, "-m", "workers.main"]
CERTS = ["api", "cm", "metrics_exporter", "proxy", "syncer"]
started: list[subprocess.Popen] = []


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def spawn(args: list[str], log: str, env: dict[str, str]) -> subprocess.Popen:
    handle = open(WORK / log, "wb")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                               start_new_session=True)
    started.append(process)
    return process


def run(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=ROOT, env=env, text=True, capture_output=True)
    if check and result.returncode not in (0, 1):
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"command failed: {' '.join(args[2:])}")
    return result


def wait_for_demo(predicate, timeout: float, what: str):  # noqa: ANN001, ANN201
    """Wait, but stop at once if a process the demo started has died."""
    return wait_for(predicate, timeout, 0.5, what=what,
                    alive=lambda: all(process.poll() is None for process in started))


def stop_all() -> None:
    for process in reversed(started):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in started:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    # the demo's state is its Redis, whatever the caller's shell says (ROTATION_STORE=local)
    env = {**os.environ, "ROTATION_STORE": "redis", "ROTATION_STATE_DIR": str(WORK / "state"),
           "ROTATION_CONFIG": str(WORK / "rotation.yaml"),
           "ROTATION_SCAN_INTERVAL": "3s", "ROTATION_JITTER": "1s", "PYTHONUNBUFFERED": "1", "COLUMNS": "150"}
    if not os.environ.get("ROTATION_REDIS_URL"):
        port = free_port()
        say(f"starting a private redis-server on 127.0.0.1:{port}")
        spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
              "redis.log", env)
        env["ROTATION_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    env["ROTATION_SECRET_KEY"] = run([*ROTATION, "secret-key"], env).stdout.strip()

    say("creating an internal CA (rotation ca init)")
    run([*ROTATION, "ca", "init", "--dir", str(WORK / "ca"), "--cn", "demo internal CA"], env)

    first = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}.1"
    say(f"starting a 3-node simulated RS cluster on {first}..3 (certificates expire in 5 days)")
    spawn([*ROTATION, "simulator", "--nodes", "3", "--first-address", first, "--expires-in", "5d",
           "--fqdn", "cluster.demo.local", "--state-dir", str(WORK / "sim"), "--name", "demo",
           "--write-config", str(WORK / "rotation.yaml")], "simulator.log", env)
    wait_for_demo(lambda: (WORK / "rotation.yaml").exists(), 30, "the simulator")
    inventory = yaml.safe_load((WORK / "rotation.yaml").read_text())
    inventory["issuers"] = {"internal": {"type": "internal_ca", "ca_cert": "ca/ca.pem", "ca_key_file": "ca/ca-key.pem",
                                         "validity": "90d"}}
    inventory["clusters"]["demo"].update({"issuer": "internal", "verify_deadline": "30s"})
    (WORK / "rotation.yaml").write_text(yaml.safe_dump(inventory, sort_keys=False))

    say("rotation check: what every node serves now")
    print(run([*ROTATION, "check"], env).stdout)

    say("starting a worker and beat (scan every 3 s)")
    spawn([*ROTATION, "worker", "--concurrency", "4"], "worker.log", env)
    spawn([*ROTATION, "beat", "--schedule-file", str(WORK / "state" / "beat")], "beat.log", env)

    def all_verified() -> list[dict] | None:
        result = run([*ROTATION, "history", "--json", "--limit", "50"], env, check=False)
        try:
            records = json.loads(result.stdout or "[]")
        except ValueError:
            return None
        done = {r["cert_name"]: r for r in records if r["outcome"] == "verified"}
        print(f"\r  verified so far: {', '.join(sorted(done)) or '-'}    ", end="", flush=True)
        return list(done.values()) if set(done) == set(CERTS) else None

    records = wait_for_demo(all_verified, 120, "beat and the worker to rotate every certificate")
    print()
    say("old -> new fingerprint, as every node serves it")
    for record in sorted(records, key=lambda r: r["cert_name"]):
        print(f"{record['cert_name']:<17} rotation {record['id']} ({record['trigger']}), "
              f"new certificate valid until {record['new_not_after'][:10]}")
        for endpoint, pair in record["nodes"].items():
            print(f"    {endpoint:<58} {(pair['before'] or '-')[:16]} -> {(pair['after'] or '-')[:16]}")

    say("rotation check: independent handshakes after the rotations")
    result = run([*ROTATION, "check"], env)
    print(result.stdout)
    say(f"done: exit code of the last check {result.returncode} (0 = every certificate ok on every node)")
    if result.returncode != 0:
        raise SystemExit(1)


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
        print("stopped every process the demo started", flush=True)
