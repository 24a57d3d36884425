"""Per-database certificates (RS 8.0.2 and later): which certificate each database endpoint serves.

A database with its own certificate (``POST /v1/bdbs/{uid}/certificates``) presents it on its
port on every node it binds; the others keep presenting the cluster ``proxy`` certificate, and
``DELETE`` falls back to it. Each (node, database) pair is a :class:`_Slot`, so a node can lag
behind like the ``stale`` fault does for ``proxy`` (``bdb_stale``: models RS154601 / RS122668 for
per-database certificates, so verification on the database endpoint can fail and exercise a
rollback). Plain data on the simulator's loop, like :mod:`rotation.simulator.cluster`.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .tls import Material

if TYPE_CHECKING:
    from .nodes import Database, NodeState


class _Databases(Protocol):
    @property
    def database_list(self) -> list[Database]: ...


class Cluster(Protocol):
    """What the per-database certificates need of the cluster's state (``cluster.ClusterState``)."""

    @property
    def config(self) -> _Databases: ...

    def take_failure(self) -> tuple[int, dict[str, str]] | None: ...

    def database_nodes(self, db: Database) -> list[NodeState]: ...

    def not_all_updated(self, missed: list[int]) -> dict[str, str]: ...

    def node(self, uid: int) -> NodeState: ...

BDB_CERTS_SINCE = (8, 0, 2)  # the reference sheet infers "around 8.0.2" (K8s alert bdb_proxy_cert_expiring_soon)
_NOTHING = object()  # "no pending change" (None pending means: fall back to the proxy certificate)


class _Slot:
    """What one node presents for one database: its own certificate, or None for ``proxy``."""

    def __init__(self, material: Material | None) -> None:
        self.current = material
        self.pending: object = _NOTHING
        self.switch_at: float | None = None  # monotonic; None with a pending change = until released

    def effective(self) -> Material | None:
        if self.pending is not _NOTHING and self.switch_at is not None and time.monotonic() >= self.switch_at:
            self.release()
        return self.current

    def put(self, material: Material | None, hold_for: float | None, hold: bool) -> None:
        if not hold:
            self.current, self.pending, self.switch_at = material, _NOTHING, None
            return
        self.pending = material
        self.switch_at = None if hold_for is None else time.monotonic() + hold_for

    def release(self) -> None:
        if self.pending is not _NOTHING:
            self.current = self.pending  # type: ignore[assignment]
        self.pending, self.switch_at = _NOTHING, None


@dataclass(frozen=True)
class _LagRule:
    seconds: float | None  # None = until cleared
    bdb_uid: int | None  # None = every database


class BdbCertificates:
    """The cluster-level truth (``installed``) and what each node's endpoint serves (``_slots``)."""

    def __init__(self, state: Cluster) -> None:
        self.state = state
        self.installed: dict[int, Material] = {}
        self._slots: dict[tuple[int, int], _Slot] = {}  # (node uid, database uid)
        self._lag: dict[int, _LagRule] = {}  # node uid -> rule
        self.requests: deque[tuple[str, int, bool]] = deque(maxlen=50)  # (method, bdb uid, dry_run)

    def served(self, node: NodeState, db: Database) -> Material | None:
        """The database's own certificate as ``node`` serves it now, or None: present ``proxy``."""
        slot = self._slots.get((node.uid, db.uid))
        return slot.effective() if slot is not None else None

    def install(self, db: Database, material: Material | None) -> tuple[int, dict[str, str]]:
        """Set (or, with None, drop) the database's certificate on every bound node that is up.

        Consumes one injected failure like a cluster update: 5xx changes nothing, 409 reaches the
        first node only. Returns (status, error body or {}).
        """
        failure = self.state.take_failure()
        if failure is not None and failure[0] != 409:
            return failure
        if material is None:
            self.installed.pop(db.uid, None)
        else:
            self.installed[db.uid] = material
        up = [n for n in self.state.database_nodes(db) if not n.down]
        targets = up[:1] if failure is not None else up
        for node in targets:
            self._deliver(node, db.uid, material)
        reached = {n.uid for n in targets}
        missed = sorted(n.uid for n in self.state.database_nodes(db) if n.uid not in reached)
        if missed or failure is not None:
            return 409, self.state.not_all_updated(missed)
        return 200, {}

    def _deliver(self, node: NodeState, bdb_uid: int, material: Material | None) -> None:
        slot = self._slots.setdefault((node.uid, bdb_uid), _Slot(None))
        rule = self._lag.get(node.uid)
        hold = rule is not None and rule.bdb_uid in (None, bdb_uid)
        slot.put(material, rule.seconds if rule else None, hold)

    def resync(self, node: NodeState) -> None:
        """A node back up takes the cluster's current per-database certificates."""
        for db in self.state.config.database_list:
            if node in self.state.database_nodes(db):
                self._slots.setdefault((node.uid, db.uid), _Slot(None)).put(self.installed.get(db.uid), None, False)

    # -- the bdb_stale fault ----------------------------------------------------------------------

    def stale(self, uid: int, seconds: float | None = None, bdb_uid: int | None = None) -> None:
        """Node ``uid`` keeps serving the previous per-database certificate for ``seconds`` after a
        change (None: until cleared; <= 0: clear now and switch)."""
        self.state.node(uid)
        if bdb_uid is not None and all(db.uid != bdb_uid for db in self.state.config.database_list):
            raise ValueError(f"no database with uid {bdb_uid}")
        if seconds is not None and seconds <= 0:
            self._lag.pop(uid, None)
            for (node_uid, _), slot in self._slots.items():
                if node_uid == uid:
                    slot.release()
            return
        self._lag[uid] = _LagRule(seconds, bdb_uid)

    def clear_faults(self) -> None:
        self._lag.clear()
        for slot in self._slots.values():
            slot.release()

    def faults_snapshot(self) -> dict[str, object]:
        return {str(uid): {"seconds": r.seconds, "bdb_uid": r.bdb_uid} for uid, r in self._lag.items()}

    def snapshot(self) -> dict[str, object]:
        """Own certificates (cluster level), and per node per TLS database what a new handshake gets
        (a fingerprint, or "proxy")."""
        nodes: dict[str, dict[str, str]] = {}
        for db in self.state.config.database_list:
            for node in self.state.database_nodes(db) if db.tls else []:
                own = self.served(node, db)
                nodes.setdefault(str(node.uid), {})[str(db.uid)] = own.fingerprint if own else "proxy"
        return {"installed": {str(uid): m.fingerprint for uid, m in sorted(self.installed.items())},
                "nodes": nodes}
