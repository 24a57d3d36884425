"""Scan throughput: the service (beat's scan_all -> one Celery task per cluster, concurrent
handshakes inside each) against a plain sequential loop of handshakes, in the same run.

    .venv/bin/python benchmarks/scan.py [--clusters 10] [--nodes 5] [--delay 0.02] [--rounds 5]
                                        [--cold-rounds 3] [--json]

A fleet of simulated clusters runs in a subprocess, each connection delayed by --delay seconds
(an artificial round trip). Only loopback addresses are used. Prints endpoints per second for
both and the ratio (target: at least 25x), twice: for warm scans (a worker reuses its REST
keep-alive connections; each follows a bare loop's round) and for cold scans, each after an idle pause longer than the
keep-alive (the production case: scans an hour apart). Then the figure per worker process and the
workers' CPU per endpoint, which bounds one process (README "Scaling"), and the CPU of a
service scan against a bare concurrent handshake loop over the same endpoints (target: the bare
loop's CPU >= 85 % of the scan's), both with the fleet's CPU, rounds interleaved, medians.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import localproc  # noqa: E402
from benchmarks.check import bare_loop  # noqa: E402
from benchmarks.localproc import process_cpu, wait_for  # noqa: E402
from rotation.adapters.cluster import open_cluster  # noqa: E402
from rotation.adapters.secrets import SecretBox  # noqa: E402
from rotation.config import load_inventory  # noqa: E402
from rotation.core.model import CertName, Endpoint  # noqa: E402


def all_endpoints(inventory_path: Path) -> list[Endpoint]:
    inventory = load_inventory(inventory_path)
    endpoints: list[Endpoint] = []
    for name in inventory.clusters:
        with open_cluster(inventory, name) as session:
            view = session.view()
            for cert in (CertName.CM, CertName.API, CertName.METRICS_EXPORTER, CertName.PROXY):
                endpoints += view.endpoints(cert)
    return endpoints


def sequential_loop(endpoints: list[Endpoint]) -> float:
    """The baseline a script would do: one handshake after the other."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    start = time.perf_counter()
    for endpoint in endpoints:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=endpoint.sni) as tls:
            assert tls.getpeercert(binary_form=True)
    return time.perf_counter() - start


def service_scan(redis_client, clusters: list[str]) -> float:  # noqa: ANN001
    """beat's task, run by a real worker: until every cluster has a fresh successful scan."""
    from workers.celery_app import celery_app

    before = datetime.now(UTC).isoformat()
    start = time.perf_counter()
    celery_app.send_task("rotation.scan_all")

    def done() -> bool:
        # One round trip per poll: the harness should not steal CPU from what it measures.
        pipe = redis_client.pipeline(transaction=False)
        for cluster in clusters:
            pipe.hget(f"rotation:scan:{cluster}", "last_success")
        return all(last and last >= before for last in pipe.execute())

    wait_for(done, 120, 0.005, what="the service's scan")
    return time.perf_counter() - start


COLD_PAUSE = 6.0  # seconds: beyond httpx's 5 s keep-alive expiry, so every REST connection is new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--rounds", type=int, default=5, help="back-to-back service scans (median)")
    parser.add_argument("--cold-rounds", type=int, default=3,
                        help=f"service scans after {COLD_PAUSE:g}s idle each (REST keep-alive expired)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (the service scales out)")
    parser.add_argument("--worker-concurrency", type=int, default=5, help="threads per worker")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rotation-bench-"))
    redis_server = localproc.start_redis(work)
    port = redis_server.port
    env = {**os.environ, "ROTATION_REDIS_URL": redis_server.url, "ROTATION_STORE": "redis",
           "ROTATION_CONFIG": str(work / "rotation.yaml"), "ROTATION_STATE_DIR": str(work / "state"),
           "ROTATION_SECRET_KEY": SecretBox.generate_key()}  # workers refuse to start without one
    os.environ.update({k: v for k, v in env.items() if k.startswith("ROTATION_")})
    processes: list[subprocess.Popen] = [redis_server.process] if redis_server.process else []

    def spawn(cmd: list[str], log: str) -> subprocess.Popen:
        handle = open(work / log, "wb")  # noqa: SIM115
        process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        processes.append(process)
        return process

    try:
        processes.append(localproc.start_fleet(work, clusters=args.clusters, nodes=args.nodes, delay=args.delay,
                                               log=work / "fleet.log", timeout=60))
        import redis

        client = redis.Redis(port=port, decode_responses=True)
        endpoints = all_endpoints(work / "rotation.yaml")
        clusters = list(load_inventory(work / "rotation.yaml").clusters)

        for index in range(args.workers):
            spawn([sys.executable, "-m", "workers.main", "worker", "--no-supervise", "--concurrency",
                   str(args.worker_concurrency), "--hostname", f"bench{index}@%h"], f"worker{index}.log")
        for index in range(args.workers):
            wait_for(lambda i=index: b"ready" in (work / f"worker{i}.log").read_bytes(), 60, what="the workers")
        service_scan(client, clusters)  # warm-up: imports, first connections

        sequential = [sequential_loop(endpoints) for _ in range(args.rounds)]
        fleet_pid = processes[1].pid
        # Rounds interleaved (bare loop, then a service scan), so both meet the same load on a shared
        # machine. Each side's CPU is that of every process doing its handshakes: the bare loop's is this
        # process's and the fleet's; the service's is redis's, the fleet's (handshakes + REST) and the workers'.
        bare_cpu, service, per_round = [], [], []
        for _ in range(args.rounds):
            own, served = time.process_time(), process_cpu(fleet_pid)
            bare_loop(endpoints)
            bare_cpu.append(time.process_time() - own + process_cpu(fleet_pid) - served)
            cpu_before = [process_cpu(p.pid) for p in processes]
            service.append(service_scan(client, clusters))
            per_round.append([process_cpu(p.pid) - before for p, before in zip(processes, cpu_before, strict=True)])
        cpu_split = [statistics.median(parts) for parts in zip(*per_round, strict=True)]
        service_cpu = statistics.median(sum(parts) for parts in per_round)
        cold = []
        for _ in range(args.cold_rounds):
            time.sleep(COLD_PAUSE)
            cold.append(service_scan(client, clusters))
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(20)

    seq_rate = len(endpoints) / statistics.median(sequential)
    svc_rate = len(endpoints) / statistics.median(service)
    cold_rate = len(endpoints) / statistics.median(cold) if cold else None
    result = {
        "clusters": args.clusters, "nodes_per_cluster": args.nodes, "endpoints": len(endpoints),
        "round_trip_delay_s": args.delay, "rounds": args.rounds, "workers": args.workers,
        "worker_concurrency": args.worker_concurrency,
        "sequential_s": [round(x, 3) for x in sequential], "service_s": [round(x, 3) for x in service],
        "sequential_endpoints_per_s": round(seq_rate, 1), "service_endpoints_per_s": round(svc_rate, 1),
        "ratio": round(svc_rate / seq_rate, 1),
        "cold_service_s": [round(x, 3) for x in cold],
        "cold_service_endpoints_per_s": round(cold_rate, 1) if cold_rate else None,
        "cold_ratio": round(cold_rate / seq_rate, 1) if cold_rate else None,
        "service_cpu_s_per_scan": round(service_cpu, 3), "cpu_cores": os.cpu_count(),
        "bare_cpu_s_per_round": round(statistics.median(bare_cpu), 3),
        # the same handshakes with nothing else (no REST, no Redis, no Celery): CPU the service adds
        "cpu_efficiency_vs_bare": round(statistics.median(bare_cpu) / service_cpu, 3),  # rounds interleaved
        "cpu_s_per_scan": {"redis": round(cpu_split[0], 3), "simulated_fleet": round(cpu_split[1], 3),
                           "workers": round(sum(cpu_split[2:]), 3)},
    }
    # Sizing ("Scaling" in the README): a worker process is held to one core by the GIL, so its worker
    # CPU per endpoint bounds what one process can scan, whatever the round trip.
    worker_cpu_ms = 1000 * sum(cpu_split[2:]) / len(endpoints)
    result.update({
        "per_worker_process_endpoints_per_s": round(svc_rate / args.workers, 1),
        "worker_cpu_ms_per_endpoint": round(worker_cpu_ms, 3),
        "one_process_ceiling_endpoints_per_s": round(1000 / worker_cpu_ms, 1) if worker_cpu_ms else None,
    })
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['endpoints']} endpoints on {args.clusters} clusters x {args.nodes} nodes, "
          f"{args.workers} worker process(es) x {args.worker_concurrency} threads, "
          f"{args.delay * 1000:.0f} ms round trip per connection, median of {args.rounds} rounds")
    print(f"  sequential loop of handshakes : {seq_rate:8.1f} endpoints/s  ({statistics.median(sequential):.2f} s)")
    print(f"  service scan (beat task)      : {svc_rate:8.1f} endpoints/s  ({statistics.median(service):.3f} s)"
          f"  warm scans, median of {args.rounds}")
    print(f"  ratio                         : {result['ratio']:.1f}x (target >= 25x)")
    if cold_rate:
        print(f"  cold service scan             : {cold_rate:8.1f} endpoints/s  ({statistics.median(cold):.3f} s)"
              f"  each after {COLD_PAUSE:g}s idle, median of {args.cold_rounds}")
        print(f"  cold ratio                    : {result['cold_ratio']:.1f}x (target >= 25x)")
    print(f"  per worker process            : {result['per_worker_process_endpoints_per_s']:8.1f} endpoints/s;"
          f" worker CPU {worker_cpu_ms:.2f} ms per endpoint, so one process (one core) tops out near"
          f" {result['one_process_ceiling_endpoints_per_s']} endpoints/s")
    print(f"  CPU per service scan (fleet + workers + redis, medians): {service_cpu:.2f} s on {os.cpu_count()} cores "
          f"(floor for the scan's wall time: {service_cpu / (os.cpu_count() or 1):.2f} s): "
          + ", ".join(f"{k} {v:.2f} s" for k, v in result["cpu_s_per_scan"].items()))
    print(f"  CPU efficiency vs a bare concurrent handshake loop ({result['bare_cpu_s_per_round']:.2f} s CPU, "
          f"client + fleet, same endpoints, rounds interleaved with the service's): "
          f"{result['cpu_efficiency_vs_bare'] * 100:.0f} % (target >= 85 %)")


if __name__ == "__main__":
    main()
