"""Mass rotation: verified rotations per second with 2 worker processes against simulated clusters,
next to a bare Celery no-op task run by the same workers in the same run.

    .venv/bin/python benchmarks/mass_rotation.py [--clusters 20] [--nodes 3] [--delay 0]
                                                 [--certs cm,metrics_exporter,proxy] [--rounds 3]
                                                 [--workers 2] [--concurrency 4] [--noop 2000] [--json]

A fleet of simulated clusters runs in a subprocess (loopback only), a redis-server and --workers
`rotation worker` processes (Celery, thread pool) run as the service does. Each round queues one
rotation of every (cluster, certificate) through the queue the CLI uses (``CeleryRotationQueue``),
then waits until every one has ended (its record finished, its marker released). Printed: verified
rotations per second, worker CPU milliseconds per rotation (user + system of the worker processes,
from /proc), and the ratio to a bare Celery no-op task (``celery.accumulate``) rate of the same
workers measured in the same run. Target: >= 60 verified/s with 2 workers.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import yaml  # noqa: E402

from benchmarks import localproc  # noqa: E402
from benchmarks.localproc import process_cpu, wait_for  # noqa: E402
from rotation.adapters.issuers.internal_ca import init_ca  # noqa: E402
from rotation.adapters.secrets import SecretBox  # noqa: E402


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its descendants that are alive."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += process_cpu(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def start_fleet(args: argparse.Namespace, directory: Path) -> tuple[subprocess.Popen, Path]:
    fleet = localproc.start_fleet(directory, clusters=args.clusters, nodes=args.nodes, delay=args.delay)
    ca_cert, ca_key = init_ca(directory / "ca")
    data = yaml.safe_load((directory / "rotation.yaml").read_text())
    data["issuers"] = {"internal": {"type": "internal_ca", "ca_cert": str(ca_cert), "ca_key_file": str(ca_key),
                                    "validity": "90d"}}
    for entry in data["clusters"].values():
        entry.update({"issuer": "internal", "verify_deadline": "30s"})
    path = directory / "rotation.yaml"
    path.write_text(yaml.safe_dump(data))
    return fleet, path


def noop_rate(app, count: int) -> float:  # noqa: ANN001
    """Bare Celery no-ops per second through the same broker, backend and workers."""
    start = time.perf_counter()
    results = [app.send_task("celery.accumulate", args=(1,)) for _ in range(count)]
    for result in results:
        result.get(timeout=120)
    return count / (time.perf_counter() - start)


def rotation_round(queue, pairs: list[tuple[str, str]], client: redis.Redis) -> tuple[float, list]:  # noqa: ANN001
    """Queue one rotation of every pair, wait until every one ended; seconds and the records."""
    start = time.perf_counter()
    ids = [queue.submit(cluster, cert, trigger="cli", requested_by="bench") for cluster, cert in pairs]

    def ended() -> bool:
        # one round trip per look: the harness should not steal CPU from what it measures
        return not client.keys("rotation:pending:*")

    wait_for(ended, 600, interval=0.02, what="every rotation of the round")
    elapsed = time.perf_counter() - start
    records = [queue.ctx.state.get(i) for i in ids]
    return elapsed, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.0, help="round-trip delay per connection (s)")
    parser.add_argument("--certs", default="cm,metrics_exporter,proxy")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=4, help="threads per worker process")
    parser.add_argument("--noop", type=int, default=2000, help="no-op tasks of the baseline")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        redis_server = localproc.start_redis(directory)
        redis_port, redis_url, redis_proc = redis_server.port, redis_server.url, redis_server.process
        fleet, workers = None, []
        try:
            fleet, inventory_path = start_fleet(args, directory / "fleet")
            env = {"ROTATION_REDIS_URL": redis_url, "ROTATION_STORE": "redis",
                   "ROTATION_SECRET_KEY": SecretBox.generate_key(), "ROTATION_CONFIG": str(inventory_path),
                   "ROTATION_STATE_DIR": str(directory / "state")}
            os.environ.update(env)
            for number in range(args.workers):
                log = open(directory / f"worker-{number}.log", "wb")  # noqa: SIM115
                workers.append(subprocess.Popen(
                    [sys.executable, "-m", "workers.main", "worker", "--no-supervise", "--concurrency",
                     str(args.concurrency), "--log-level", "WARNING", "--hostname", f"bench{number}@%h"],
                    cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=log))
            from rotation.usecases.context import ServiceContext
            from workers.celery_app import app_for
            from workers.queue import CeleryRotationQueue

            ctx = ServiceContext()
            app = app_for(ctx.settings)
            wait_for(lambda: len(app.control.ping(timeout=0.5) or []) >= args.workers, 60, what="the workers")
            client = redis.Redis(port=redis_port)
            queue = CeleryRotationQueue(ctx)
            pairs = [(cluster, cert) for cluster in ctx.inventory().clusters for cert in args.certs.split(",")]
            noop_rate(app, 200)  # warm up: connections, imports, the workers' pools
            rotation_round(queue, pairs[: len(pairs) // 4 or 1], client)  # warm up: sessions, issuers
            baseline = noop_rate(app, args.noop)
            rates, cpu_ms, fleet_ms, outcomes = [], [], [], {}
            for _ in range(args.rounds):
                cpu_before = sum(tree_cpu(w.pid) for w in workers)
                fleet_before = tree_cpu(fleet.pid)
                elapsed, records = rotation_round(queue, pairs, client)
                cpu = sum(tree_cpu(w.pid) for w in workers) - cpu_before
                fleet_ms.append((tree_cpu(fleet.pid) - fleet_before) * 1000 / len(pairs))
                verified = sum(1 for r in records if r is not None and str(r.outcome) == "verified")
                for r in records:
                    key = str(r.outcome) if r is not None else "lost"
                    outcomes[key] = outcomes.get(key, 0) + 1
                rates.append(verified / elapsed)
                cpu_ms.append(cpu * 1000 / len(pairs))
            baseline_after = noop_rate(app, args.noop)
        finally:
            for proc in (*workers, fleet, redis_proc):
                if proc is not None:
                    proc.send_signal(signal.SIGTERM)
            for proc in (*workers, fleet, redis_proc):
                if proc is not None:
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        proc.kill()
    noop = (baseline + baseline_after) / 2
    result = {
        "clusters": args.clusters, "nodes": args.nodes, "certs": args.certs, "rotations_per_round": len(pairs),
        "rounds": args.rounds, "workers": args.workers, "threads_per_worker": args.concurrency,
        "verified_per_second": round(statistics.median(rates), 1), "rounds_verified_per_second":
            [round(r, 1) for r in rates], "worker_cpu_ms_per_rotation": round(statistics.median(cpu_ms), 1),
        "simulator_cpu_ms_per_rotation": round(statistics.median(fleet_ms), 1),
        "noop_tasks_per_second": round(noop, 1), "ratio_to_noop": round(statistics.median(rates) / noop, 3),
        "outcomes": outcomes, "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"mass rotation: {len(pairs)} rotations per round ({args.clusters} clusters x {args.certs}, "
          f"{args.nodes} nodes each), {args.rounds} rounds, {args.workers} worker processes x {args.concurrency} "
          f"threads, {os.cpu_count()} CPU(s), fleet and harness on the same machine")
    print(f"  verified/s (median of rounds) {result['verified_per_second']}  "
          f"rounds {result['rounds_verified_per_second']}"
          f"  outcomes {outcomes}")
    print(f"  worker CPU per rotation       {result['worker_cpu_ms_per_rotation']} ms  (the simulated clusters' side: "
          f"{result['simulator_cpu_ms_per_rotation']} ms, on the same 2 cores)")
    print(f"  bare Celery no-op tasks/s     {result['noop_tasks_per_second']} (same workers, same run)")
    verdict = "met" if result["verified_per_second"] >= 60 else "NOT met"
    print(f"  ratio rotations / no-ops      {result['ratio_to_noop']}; target >= 60 verified/s {verdict}")


if __name__ == "__main__":
    main()
