"""A fleet of simulated RS clusters in one process (run by the benchmarks as a subprocess).

    python benchmarks/fleet.py --clusters 10 --nodes 5 --delay 0.02 --out DIR

Writes DIR/rotation.yaml (every cluster, ready to use) and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import random
import sys
from datetime import timedelta
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.localproc import wait_for_stop  # noqa: E402
from rotation.simulator import ClusterSimulator, Database, SimulatorConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.02, help="round-trip delay per connection (s)")
    parser.add_argument("--concurrency", type=int, default=32, help="per-cluster handshake cap in the inventory")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    second = random.randint(100, 200)
    simulators, clusters = [], {}
    for index in range(args.clusters):
        name = f"c{index:02d}"
        config = SimulatorConfig(
            fqdn=f"{name}.bench.local", nodes=args.nodes, first_address=f"127.{second}.{index + 1}.1",
            databases=[Database(1, "db1", 12000, True, "all-nodes"), Database(2, "db2", 12001, True, "single")],
            expires_in=timedelta(days=365), connect_delay=args.delay, state_dir=args.out / name,
        )
        simulator = ClusterSimulator(config).start()
        simulators.append(simulator)
        entry = simulator.inventory_entry(name)
        entry.update({"concurrency": args.concurrency, "handshake_timeout": "10s"})
        clusters[name] = entry
    (args.out / "rotation.yaml").write_text(yaml.safe_dump({"clusters": clusters}))
    (args.out / "ready").write_text("ok")
    wait_for_stop()
    for simulator in simulators:
        simulator.stop()


if __name__ == "__main__":
    main()
