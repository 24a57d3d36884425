"""Fleet check throughput: `rotation check` (the use case, in this process) against a bare concurrent
handshake loop over the same endpoints, in the same run, at each round-trip delay.

    .venv/bin/python benchmarks/check.py [--clusters 16] [--nodes 3] [--delays 0,0.02] [--rounds 7] [--json]

A fleet of simulated clusters runs in a subprocess (loopback only), every connection delayed by the
round trip (REST connections too). Each cluster has 3 nodes x (cm, api, metrics_exporter) plus
database endpoints: 16 clusters make 208 handshakes per check. `rotation check` reads every
cluster's REST API (a new client per check, as the CLI does), handshakes every endpoint under the
per-cluster and global caps, judges, and reads the coupling and OCSP; the bare loop only handshakes,
on the same event loop implementation with the same global cap. Prints endpoints per second of both
and the ratio (target: the check >= 80 % of the bare loop), rounds interleaved, medians.

Each check round starts as a new CLI process would: no certificate parsed yet and no REST TLS context
built (the process-wide caches are emptied; imports stay warm). Both sides share the machine's cores
with the simulated fleet, so the throughput ratio is mostly a CPU ratio: CPU per endpoint is printed for
this process and the fleet, with the ratios of the two CPU costs (bare / check) for reference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.localproc import process_cpu, start_fleet  # noqa: E402
from rotation.adapters.rs import tls_context  # noqa: E402
from rotation.adapters.tls import aio, probe  # noqa: E402
from rotation.adapters.tls.probe import GLOBAL_HANDSHAKES  # noqa: E402
from rotation.config import Inventory, load_inventory  # noqa: E402
from rotation.core.model import Endpoint  # noqa: E402
from rotation.usecases.check import READERS, check_clusters  # noqa: E402

TARGET = 0.80


def _context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _bare(endpoints: list[Endpoint], cap: int) -> None:
    context, semaphore = _context(), asyncio.Semaphore(cap)

    async def one(endpoint: Endpoint) -> None:
        async with semaphore:
            _, writer = await asyncio.open_connection(endpoint.host, endpoint.port, ssl=context,
                                                      server_hostname=endpoint.sni or endpoint.host)
            assert writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            writer.transport.abort()

    await asyncio.gather(*(one(e) for e in endpoints))


def bare_loop(endpoints: list[Endpoint], cap: int = GLOBAL_HANDSHAKES) -> float:
    """The baseline: every endpoint handshaken concurrently, nothing else (no REST, no parsing)."""
    start = time.perf_counter()
    aio.run(_bare(endpoints, cap))
    return time.perf_counter() - start


def cold_caches() -> None:
    """What a new process has not done yet: parse the served certificates, build the REST TLS contexts."""
    probe._leaf_facts.cache_clear()
    tls_context._ssl_context.cache_clear()


def fleet_check(inventory: Inventory, names: list[str], readers: int = READERS) -> tuple[float, list[Endpoint]]:
    cold_caches()
    start = time.perf_counter()
    report = check_clusters(inventory, names, readers=readers)
    elapsed = time.perf_counter() - start
    if report.errors:
        raise SystemExit(f"the check failed: {report.errors[:3]}")
    return elapsed, [s.endpoint for state in report.states for s in state.served if s.endpoint.port]


def measure(args: argparse.Namespace, delay: float) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="rotation-bench-check-"))
    fleet = start_fleet(work, clusters=args.clusters, nodes=args.nodes, delay=delay, log=work / "fleet.log")
    try:
        inventory = load_inventory(work / "rotation.yaml")
        names = list(inventory.clusters)
        _, endpoints = fleet_check(inventory, names)  # warm-up: imports, caches
        bare_loop(endpoints)
        checks, bares, check_cpu, bare_cpu, check_fleet_cpu, bare_fleet_cpu = [], [], [], [], [], []
        for _ in range(args.rounds):
            cpu, served = time.process_time(), process_cpu(fleet.pid)
            elapsed, seen = fleet_check(inventory, names, args.readers)
            check_cpu.append(time.process_time() - cpu)
            check_fleet_cpu.append(process_cpu(fleet.pid) - served)
            checks.append(elapsed)
            assert len(seen) == len(endpoints)
            cpu, served = time.process_time(), process_cpu(fleet.pid)
            bares.append(bare_loop(endpoints))
            bare_cpu.append(time.process_time() - cpu)
            bare_fleet_cpu.append(process_cpu(fleet.pid) - served)
    finally:
        os.killpg(fleet.pid, signal.SIGTERM)
        fleet.wait(30)
    check_rate = len(endpoints) / statistics.median(checks)
    bare_rate = len(endpoints) / statistics.median(bares)
    return {"round_trip_delay_s": delay, "clusters": len(names), "endpoints": len(endpoints),
            "check_s": [round(x, 3) for x in checks], "bare_s": [round(x, 3) for x in bares],
            "check_endpoints_per_s": round(check_rate, 1), "bare_endpoints_per_s": round(bare_rate, 1),
            "ratio": round(check_rate / bare_rate, 3),
            "check_cpu_ms_per_endpoint": round(1000 * statistics.median(check_cpu) / len(endpoints), 3),
            "bare_cpu_ms_per_endpoint": round(1000 * statistics.median(bare_cpu) / len(endpoints), 3),
            # the simulated fleet's side (TLS servers and the REST API it answers), per endpoint
            "check_fleet_cpu_ms_per_endpoint": round(1000 * statistics.median(check_fleet_cpu) / len(endpoints), 3),
            "bare_fleet_cpu_ms_per_endpoint": round(1000 * statistics.median(bare_fleet_cpu) / len(endpoints), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=16)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--delays", default="0,0.02", help="round-trip delays to measure at, seconds")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of each (interleaved; medians)")
    parser.add_argument("--readers", type=int, default=READERS, help="REST reader threads of the check")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [measure(args, float(delay)) for delay in args.delays.split(",")]
    if args.json:
        print(json.dumps({"target_ratio": TARGET, "cpu_cores": os.cpu_count(), "results": results}, indent=2))
        return
    for r in results:
        print(f"{r['endpoints']} endpoints on {r['clusters']} clusters x {args.nodes} nodes, "
              f"{float(r['round_trip_delay_s']) * 1000:.0f} ms round trip, median of {args.rounds} rounds "  # type: ignore[arg-type]
              f"on {os.cpu_count()} cores")
        print(f"  bare concurrent handshakes : {r['bare_endpoints_per_s']:8} endpoints/s  (CPU ms each: "
              f"{r['bare_cpu_ms_per_endpoint']} here, {r['bare_fleet_cpu_ms_per_endpoint']} in the fleet)")
        print(f"  rotation check (use case)  : {r['check_endpoints_per_s']:8} endpoints/s  (CPU ms each: "
              f"{r['check_cpu_ms_per_endpoint']} here, {r['check_fleet_cpu_ms_per_endpoint']} in the fleet)")
        client = float(r["bare_cpu_ms_per_endpoint"]) / float(r["check_cpu_ms_per_endpoint"])  # type: ignore[arg-type]
        total = ((float(r["bare_cpu_ms_per_endpoint"]) + float(r["bare_fleet_cpu_ms_per_endpoint"]))  # type: ignore[arg-type]
                 / (float(r["check_cpu_ms_per_endpoint"]) + float(r["check_fleet_cpu_ms_per_endpoint"])))  # type: ignore[arg-type]
        print(f"  CPU per endpoint, bare/check: {client * 100:.0f} % here, {total * 100:.0f} % here + fleet")
        verdict = "ok" if float(r["ratio"]) >= TARGET else "BELOW TARGET"  # type: ignore[arg-type]
        print(f"  ratio                      : {float(r['ratio']) * 100:.0f} % of bare (target >= "  # type: ignore[arg-type]
              f"{TARGET * 100:.0f} %) {verdict}")


if __name__ == "__main__":
    main()
