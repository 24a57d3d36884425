"""`make demo-replication`: two simulated clusters linked by Replica Of, both coupled certificates
rotated through the queue, and the link's status before, during and after.

east db1 is the source, west db1 its replica (west's syncer connects to east over TLS, presents
west's syncer certificate, and trusts only the proxy certificate west pins). The demo starts (and
always stops) a private redis-server (or uses $ROTATION_REDIS_URL), the two clusters (in this
process, each on its own 127.x range), and a worker; then `rotation rotate west syncer` and
`rotation rotate east proxy` go through the queue and are followed step by step, while a thread
here checks the link every 0.1 s. Exit 0 when both rotations are verified and the link is in
sync at the end with the old syncer entry gone. Everything listens on loopback only.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.localproc import free_port, wait_for  # noqa: E402
from rotation.adapters.issuers.internal_ca import init_ca  # noqa: E402
from rotation.core.coupling_data import leaf_fingerprint  # noqa: E402
from rotation.simulator.fleet import Fleet  # noqa: E402

WORK = Path(os.environ.get("ROTATION_DEMO_DIR") or ROOT / ".demo-replication")
ROTATION = [sys.executable, "-m", "workers.main"]
ROTATIONS = [("west", "syncer"), ("east", "proxy")]
started: list[subprocess.Popen] = []


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def spawn(args: list[str], log: str, env: dict[str, str]) -> subprocess.Popen:
    with open(WORK / log, "wb") as handle:
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    started.append(process)
    return process


def command(args: list[str], env: dict[str, str]) -> int:
    """A `rotation` command, its output shown as it comes."""
    print(f"$ rotation {' '.join(args)}", flush=True)
    return subprocess.run([*ROTATION, *args], cwd=ROOT, env=env).returncode


class LinkWatch(threading.Thread):
    """Checks the link every 0.1 s (real syncer handshakes) and prints each change of status."""

    def __init__(self, fleet: Fleet) -> None:
        super().__init__(daemon=True)
        self.fleet, self.stop_event, self.seen, self.started_at = fleet, threading.Event(), [], time.monotonic()

    def status(self) -> tuple[str, str]:
        (row,) = self.fleet["west"].replication.check_now([1])
        return row["status"], row["last_error"]

    def run(self) -> None:
        last = None
        while not self.stop_event.wait(0.1):
            status, error = self.status()
            self.seen.append(status)
            if status != last:
                print(f"   [link west db1 <- east db1 at +{time.monotonic() - self.started_at:4.1f}s] {status}"
                      + (f": {error}" if error else ""), flush=True)
                last = status

    def finish(self) -> list[str]:
        self.stop_event.set()
        self.join(5)
        return self.seen


def write_inventory(fleet: Fleet) -> Path:
    clusters = {}
    for name, entry in fleet.inventory().items():
        entry.update(issuer="internal", verify_deadline="20s", certificates={"proxy": {}, "syncer": {}})
        clusters[name] = entry
    data = {"renew_before": "30d", "clusters": clusters,
            "issuers": {"internal": {"type": "internal_ca", "ca_cert": "ca/ca.pem", "ca_key_file": "ca/ca-key.pem",
                                     "validity": "90d"}}}
    path = WORK / "rotation.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def environment() -> dict[str, str]:
    # the demo's state is its Redis, whatever the caller's shell says (ROTATION_STORE=local)
    env = {**os.environ, "ROTATION_STORE": "redis", "ROTATION_STATE_DIR": str(WORK / "state"),
           "ROTATION_CONFIG": str(WORK / "rotation.yaml"),
           "PYTHONUNBUFFERED": "1", "COLUMNS": "160"}
    if not os.environ.get("ROTATION_REDIS_URL"):
        port = free_port()
        say(f"starting a private redis-server on 127.0.0.1:{port}")
        spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
              "redis.log", env)
        env["ROTATION_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    from rotation.adapters.secrets import SecretBox

    env["ROTATION_SECRET_KEY"] = SecretBox.generate_key()
    return env


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    env = environment()
    init_ca(WORK / "ca", common_name="demo internal CA")
    given = os.environ.get("ROTATION_DEMO_ADDRESSES")  # the tests hand out loopback ranges
    addresses = given.split(",") if given else [f"127.{b}.{random.randint(1, 250)}.1"
                                                 for b in random.sample(range(100, 250), 2)]
    say("starting two simulated clusters: east (source) and west (replica of east db1)")
    with Fleet(["east", "west"], state_dir=WORK / "fleet", nodes=2, sync_interval=0.5,
               first_addresses=addresses) as fleet:
        fleet.replica_of("east", "west")
        write_inventory(fleet)
        say("starting a worker")
        worker = spawn([*ROTATION, "worker", "--concurrency", "1"], "worker.log", env)
        wait_for(lambda: b"ready" in (WORK / "worker.log").read_bytes(), 60, 0.2, what="the worker",
                 alive=lambda: worker.poll() is None)
        return demo(fleet, env)


def demo(fleet: Fleet, env: dict[str, str]) -> int:
    say("before: the link and what it depends on")
    codes = [command(["links"], env)]
    old_syncer = fleet["west"].cluster_cert_pem("syncer")
    for cluster, cert in ROTATIONS:
        say(f"during: `rotation rotate {cluster} {cert}` through the queue, the link checked every 0.1 s")
        watch = LinkWatch(fleet)
        watch.start()
        codes.append(command(["rotate", cluster, cert], env))
        seen = watch.finish()
        print(f"   link checked {len(seen)} times during the rotation: "
              + ", ".join(f"{seen.count(s)} {s}" for s in dict.fromkeys(seen)), flush=True)
    say("after: the link, and east db1's trusted syncer certificates")
    codes.append(command(["links"], env))
    listed = [e["client_cert"] for e in fleet["east"].replication.bdb_fields(1)["authentication_ssl_client_certs"]]
    gone = leaf_fingerprint(old_syncer) not in {leaf_fingerprint(pem) for pem in listed}
    print(f"east db1 trusts {len(listed)} syncer certificate(s); "
          f"west's old one {'is gone' if gone else 'IS STILL LISTED'}")
    ok = codes == [0] * len(codes) and gone
    say(f"done: {'every rotation verified, the link in sync' if ok else 'something failed: exit codes ' + str(codes)}")
    return 0 if ok else 1


def stop_all() -> None:
    for process in reversed(started):
        if process.poll() is None:
            os.killpg(process.pid, 15)
    for process in started:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(5)


if __name__ == "__main__":
    try:
        code = main()
    finally:
        stop_all()
        print("stopped every process the demo started", flush=True)
    raise SystemExit(code)
