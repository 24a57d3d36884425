"""Reading the replication coupling graph: every inventory cluster's links, a few at a time.

Each cluster answers ``GET /v1/cluster``, ``/v1/nodes``, ``/v1/bdbs`` and ``/v1/crdbs``
(``ClusterSession.replication``); :class:`rotation.core.coupling.CouplingGraph` matches the ends.
A cluster that cannot be read is named in ``graph.unread``: what it might depend on is unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

from rotation.adapters.cluster import ClusterSession
from rotation.config import Inventory
from rotation.core.coupling import CouplingGraph
from rotation.core.coupling_data import ClusterLinks
from rotation.core.errors import RotationError

OpenSession = Callable[[str], AbstractContextManager[ClusterSession]]

READERS = 8  # clusters read at once


def read_graph(inventory: Inventory, open_session: OpenSession, *, own: ClusterSession | None = None,
               names: Sequence[str] | None = None) -> CouplingGraph:
    """The graph of ``names`` (default: every inventory cluster). ``own`` is a session already open
    (the rotating cluster's), read through it instead of opening another."""
    names = list(names if names is not None else inventory.clusters)

    def read(name: str) -> ClusterLinks | str:
        try:
            if own is not None and own.name == name:
                return own.replication()
            with open_session(name) as session:
                return session.replication()
        except RotationError as exc:
            return exc.message

    with ThreadPoolExecutor(max_workers=max(1, min(READERS, len(names)))) as pool:
        answers = dict(zip(names, pool.map(read, names), strict=True))
    read_ok = [a for a in answers.values() if isinstance(a, ClusterLinks)]
    unread = {name: a for name, a in answers.items() if isinstance(a, str)}
    return CouplingGraph.build(read_ok, unread)


__all__ = ["OpenSession", "read_graph"]
