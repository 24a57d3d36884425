"""Reading the coupling graph again within seconds (a worker rotating many proxies): clusters read with
no replication at all are reused for ``ISOLATED_TTL`` seconds on the injected clock, unless a cluster
read fresh names one as a peer; the rotating cluster and every cluster with links are always read.
Real simulated clusters; the graph built from reused links is the one a fresh read builds."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from support.clock import FakeClock
from support.fleet import load_fleet_inventory

from rotation.adapters.cluster import ClusterSession, open_cluster
from rotation.config import Inventory
from rotation.core.coupling import CouplingGraph
from rotation.core.model import CertName
from rotation.simulator.fleet import Fleet
from rotation.usecases.coupling import ISOLATED_TTL, IsolatedLinks, read_graph


class Opened:
    """``open_session`` that counts which clusters were read through it."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory, self.names = inventory, []

    def __call__(self, name: str) -> AbstractContextManager[ClusterSession]:
        self.names.append(name)
        return open_cluster(self.inventory, name)


def pins(graph: CouplingGraph) -> list[str]:
    return sorted(link.label for link in graph.impact("east", CertName.PROXY).pins)


def test_isolated_clusters_are_reused_for_seconds_unless_a_fresh_one_names_them(
        linked_fleet: Any, tmp_path: Path, ca_files: tuple[Path, Path]) -> None:
    fleet: Fleet = linked_fleet(["east", "west", "north"])
    fleet.replica_of("east", "west", trust_syncer=False)  # west pins east's proxy; east itself checks nobody
    inventory = load_fleet_inventory(tmp_path, fleet, ca_files)
    clock = FakeClock()
    reuse = IsolatedLinks(clock)

    first = Opened(inventory)
    fresh = read_graph(inventory, first, reuse=reuse)
    assert sorted(first.names) == ["east", "north", "west"] and pins(fresh) == ["west db1 <- east db1"]

    clock.advance(ISOLATED_TTL / 2)
    second = Opened(inventory)
    again = read_graph(inventory, second, reuse=reuse)
    # north is reused; west has a link, so it is read; it names east, so east is read too
    assert sorted(second.names) == ["east", "west"] and pins(again) == pins(fresh)

    with open_cluster(inventory, "north") as north:  # the rotating cluster: read through its own session
        third = Opened(inventory)
        read_graph(inventory, third, own=north, reuse=reuse)
    assert sorted(third.names) == ["east", "west"]

    clock.advance(ISOLATED_TTL)
    fourth = Opened(inventory)
    read_graph(inventory, fourth, reuse=reuse)
    assert sorted(fourth.names) == ["east", "north", "west"]  # too old: read again
