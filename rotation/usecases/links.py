"""`rotation links` and `rotation check`'s coupling: the inventory's replication links and what
each certificate's rotation would touch.

The graph is read from every inventory cluster (a link is seen from its replica's side, so
showing one cluster's links still needs the others to name their ends).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rotation.adapters.cluster import ClusterSession, open_cluster
from rotation.config import Inventory
from rotation.core.coupling import CouplingGraph, Link
from rotation.core.model import CertName
from rotation.usecases.coupling import read_graph

SHOWN = (CertName.PROXY, CertName.SYNCER, CertName.API)


@dataclass
class LinksReport:
    links: list[Link] = field(default_factory=list)
    unread: dict[str, str] = field(default_factory=dict)
    outsiders: dict[str, list[str]] = field(default_factory=dict)  # CRDB guid -> participants outside
    unknown_clients: dict[str, int] = field(default_factory=dict)  # "cluster dbN" -> client certs of no cluster

    @property
    def exit_code(self) -> int:
        """0 every link in sync, 1 one is not, 2 a cluster could not be read."""
        if self.unread:
            return 2
        return 0 if all(link.in_sync for link in self.links) else 1

    def to_dict(self) -> dict[str, Any]:
        return {"links": [link.to_dict() for link in self.links], "unread": self.unread,
                "crdb_participants_outside": self.outsiders, "unknown_client_certs": self.unknown_clients,
                "exit_code": self.exit_code}


def _graph(inventory: Inventory) -> CouplingGraph:
    def open_session(name: str) -> ClusterSession:
        return open_cluster(inventory, name)

    return read_graph(inventory, open_session)


def links_report(inventory: Inventory, names: Sequence[str] | None = None) -> LinksReport:
    """Every link with at least one end among ``names`` (default: all), its status read now."""
    graph = _graph(inventory)
    wanted = set(names or inventory.clusters)
    shown = [link for link in graph.links if {link.source.cluster, link.replica.cluster} & wanted]
    unknown = {db: n for db, n in graph.unknown_clients.items() if db.split(" ")[0] in wanted}
    return LinksReport(shown, graph.unread, graph.outsiders, unknown)


def coupled_certificates(inventory: Inventory, pairs: Iterable[tuple[str, CertName | str]],
                         graph: CouplingGraph | None = None) -> tuple[dict[str, list[str]], dict[str, str]]:
    """``"cluster/cert" -> dependents`` for the coupled ones among ``pairs``, and the clusters whose
    links could not be read (what depends on their certificates is unknown). ``graph``: one already
    read (else every inventory cluster is read now)."""
    shown = [(cluster, CertName(cert)) for cluster, cert in pairs if cert in SHOWN]
    if not shown:
        return {}, {}
    graph = graph or _graph(inventory)
    coupled = {}
    for cluster, cert in dict.fromkeys(shown):
        dependents = graph.impact(cluster, cert).dependents()
        if dependents:
            coupled[f"{cluster}/{cert}"] = dependents
    return coupled, graph.unread


__all__ = ["LinksReport", "coupled_certificates", "links_report"]
