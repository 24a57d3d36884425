"""Reading the replication coupling graph: every inventory cluster's links, a few at a time.

Each cluster answers ``GET /v1/cluster``, ``/v1/nodes``, ``/v1/bdbs`` and ``/v1/crdbs``
(``ClusterSession.replication``); :class:`rotation.core.coupling.CouplingGraph` matches the ends.
A cluster that cannot be read is named in ``graph.unread``: what it might depend on is unknown.

A worker rotating many certificates reads the same clusters again and again, and most of them
have no replication at all. ``IsolatedLinks`` keeps, for a few seconds, the links of clusters read
with none (no Replica Of source, no Active-Active database, no database checking replica
clients); ``read_graph`` reuses them, unless a cluster read fresh in the same graph names one of
them as a peer (then it is read fresh too). The rotating cluster and every cluster that has links
are always read fresh: what the rotation changes or waits for is never taken from memory. A link
created on an isolated cluster is seen at most ``ISOLATED_TTL`` seconds late.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

from rotation.adapters.cluster import ClusterSession
from rotation.config import Inventory
from rotation.core.clock import Clock
from rotation.core.coupling import CouplingGraph
from rotation.core.coupling_data import ClusterLinks
from rotation.core.errors import RotationError

OpenSession = Callable[[str], AbstractContextManager[ClusterSession]]

READERS = 8  # clusters read at once
ISOLATED_TTL = 5.0  # seconds the links of a cluster read without any are reused


def isolated(links: ClusterLinks) -> bool:
    """No replication of any kind: nothing on this cluster depends on a peer's certificate or checks one."""
    return not links.crdbs and not any(db.replica_sources or db.crdt_guid or db.crdt_sources or db.client_certs
                                       for db in links.databases)


def _peer_hosts(links: ClusterLinks) -> set[str]:
    """Every host this cluster's links name: its sources, Active-Active peers and instances."""
    hosts = {entry.host for db in links.databases for entry in (*db.replica_sources, *db.crdt_sources)}
    hosts |= {host for crdb in links.crdbs for instance in crdb.instances
              for host in (instance.fqdn, instance.url_host, instance.endpoint_host) if host}
    return hosts


class IsolatedLinks:
    """The links of clusters read with none, reused for ``ttl`` seconds (one per process; thread-safe)."""

    def __init__(self, clock: Clock, ttl: float = ISOLATED_TTL) -> None:
        self.clock, self.ttl = clock, ttl
        self._kept: dict[str, tuple[float, ClusterLinks]] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> ClusterLinks | None:
        with self._lock:
            kept = self._kept.get(name)
            if kept is None or self.clock.monotonic() - kept[0] >= self.ttl:
                self._kept.pop(name, None)
                return None
            return kept[1]

    def keep(self, links: ClusterLinks) -> None:
        """Remember ``links`` if the cluster has none; forget what was kept of it otherwise."""
        with self._lock:
            if isolated(links):
                self._kept[links.name] = (self.clock.monotonic(), links)
            else:
                self._kept.pop(links.name, None)


def read_graph(inventory: Inventory, open_session: OpenSession, *, own: ClusterSession | None = None,
               names: Sequence[str] | None = None, reuse: IsolatedLinks | None = None) -> CouplingGraph:
    """The graph of ``names`` (default: every inventory cluster). ``own`` is a session already open
    (the rotating cluster's), read through it instead of opening another. ``reuse``: clusters
    recently read without links are taken from it (see the module's docstring)."""
    names = list(names if names is not None else inventory.clusters)
    kept = {name: reuse.get(name) for name in names if reuse is not None and (own is None or name != own.name)}
    reused = {name: links for name, links in kept.items() if links is not None}

    def read(name: str) -> ClusterLinks | str:
        try:
            if own is not None and own.name == name:
                # the same answers refresh the rotating session's view, which its read step then reuses
                links = own.read_shape(links=True, every_crdb=True)
                assert links is not None  # links=True
                return links
            with open_session(name) as session:
                return session.replication()
        except RotationError as exc:
            return exc.message

    def read_all(which: list[str]) -> dict[str, ClusterLinks | str]:
        if len(which) <= 1:  # the rotating cluster alone, usually: no thread to start for it
            found = {name: read(name) for name in which}
        else:
            with ThreadPoolExecutor(max_workers=max(1, min(READERS, len(which)))) as pool:
                found = dict(zip(which, pool.map(read, which), strict=True))
        for links in found.values():
            if isinstance(links, ClusterLinks) and reuse is not None:
                reuse.keep(links)
        return found

    answers = read_all([name for name in names if name not in reused])
    named = {host for a in answers.values() if isinstance(a, ClusterLinks) for host in _peer_hosts(a)}
    again = [name for name, links in reused.items() if any(links.answers_on(host) for host in named)]
    answers |= read_all(again)  # a peer of a fresh cluster: its certificates are read now, not remembered
    answers |= {name: links for name, links in reused.items() if name not in answers}
    ordered = {name: answers[name] for name in names}
    read_ok = [a for a in ordered.values() if isinstance(a, ClusterLinks)]
    unread = {name: a for name, a in ordered.items() if isinstance(a, str)}
    return CouplingGraph.build(read_ok, unread)


__all__ = ["ISOLATED_TTL", "IsolatedLinks", "OpenSession", "isolated", "read_graph"]
