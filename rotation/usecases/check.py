"""`rotation check` and chat's `check`: what every node serves now, read by real handshakes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.adapters.cluster import ClusterSession, open_cluster
from rotation.adapters.targets import TargetReads, plan_reads
from rotation.adapters.tls import aio
from rotation.adapters.tls.probe import GLOBAL_HANDSHAKES, HandshakeCaps
from rotation.config import Inventory
from rotation.core.clock import Clock
from rotation.core.coupling import CouplingGraph
from rotation.core.coupling_data import ClusterLinks
from rotation.core.errors import RotationError
from rotation.usecases.database_check import unmanaged_due
from rotation.usecases.held_check import HeldRead, judge_held, read_held
from rotation.usecases.links import SHOWN, coupled_certificates
from rotation.usecases.ocsp_status import ProxyOcsp, proxy_ocsp
from rotation.usecases.progress import Progress, Tally
from rotation.usecases.scan import CertState, earliest_expiry, judge_states

T = TypeVar("T")


class InThread(Protocol):
    """Runs a blocking call (a REST read) on the check's thread pool."""

    def __call__(self, call: Callable[[], T]) -> Awaitable[T]: ...


@dataclass
class CheckReport:
    checked_at: datetime
    states: list[CertState] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # "cluster/cert" -> what depends on it through replication (rotating it changes those peers too)
    coupled: dict[str, list[str]] = field(default_factory=dict)
    links_unread: dict[str, str] = field(default_factory=dict)  # clusters whose links could not be read
    databases: list[dict[str, Any]] = field(default_factory=list)  # unmanaged and due (database_check)
    ocsp: list[ProxyOcsp] = field(default_factory=list)  # the proxy's OCSP stapling, per cluster (6.2.12+)
    held: list[dict[str, Any]] = field(default_factory=list)  # held by a cluster, not managed (held_check)
    warnings: list[str] = field(default_factory=list)  # internode certificates near fallback, health mismatches

    @property
    def rows(self) -> list[dict[str, Any]]:
        rows = []
        now = self.checked_at
        for state in self.states:
            for served in state.served:
                left = (served.not_after - now).total_seconds() / 86400 if served.not_after else None
                rows.append({
                    "cluster": state.cluster,
                    "cert": str(state.cert_name),
                    "node": served.endpoint.node,
                    "endpoint": f"{served.endpoint.host}:{served.endpoint.port}" if served.endpoint.port
                    else served.endpoint.host,
                    "fingerprint": served.fingerprint,
                    "not_after": served.not_after.isoformat() if served.not_after else None,
                    "days_left": round(left, 1) if left is not None else None,  # a number in JSON
                    "status": str(state.health),
                    "reason": state.verdict.reason if served.ok else (served.error or ""),
                })
        everything = rows + self.databases + self.held
        order = {cluster: i for i, cluster in enumerate(dict.fromkeys(r["cluster"] for r in everything))}
        return sorted(everything, key=lambda r: order[r["cluster"]])  # grouped per cluster, stable within

    @property
    def exit_code(self) -> int:
        if self.errors:
            return 2
        return max((*(s.health.severity for s in self.states), 1 if self.databases else 0,
                    1 if any(o.problem for o in self.ocsp) else 0, 1 if self.warnings else 0), default=0)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "errors": self.errors, "exit_code": self.exit_code, "coupled": self.coupled,
                "links_unread": self.links_unread, "ocsp": [o.to_dict() for o in self.ocsp],
                "warnings": self.warnings}


READERS = 16  # clusters whose REST API is read at once (the REST client is synchronous: threads)


_RestReads = tuple[list[dict[str, Any]], ProxyOcsp | None, HeldRead]


@dataclass
class _ClusterCheck:
    """One cluster's part of a fleet check."""

    states: list[CertState] = field(default_factory=list)
    databases: list[dict[str, Any]] = field(default_factory=list)
    ocsp: ProxyOcsp | None = None
    held: list[dict[str, Any]] = field(default_factory=list)  # held by the cluster, not managed (held_check)
    warnings: list[str] = field(default_factory=list)
    links: ClusterLinks | str | None = None  # its replication links, or why they could not be read
    error: str | None = None


def check_clusters(inventory: Inventory, names: Sequence[str], clock: Clock = SYSTEM_CLOCK, *,
                   progress: Progress | None = None, global_cap: int = GLOBAL_HANDSHAKES,
                   readers: int = READERS) -> CheckReport:
    """Every managed certificate of ``names`` as each node serves it, read by real handshakes.

    The whole fleet in one event loop: each cluster's REST reads run on a thread pool of ``readers``
    (concurrently across clusters, one after the other within a cluster: its client is not
    thread-safe), and its handshakes start as soon as its shape is known, under its own
    ``concurrency`` and one cap of ``global_cap`` for the fleet. Each answer is read once: the
    replication coupling is parsed from the same ``/v1/cluster``, ``/v1/nodes`` and ``/v1/bdbs``
    answers (``/v1/crdbs`` only where a database has a ``crdt_guid``); the clusters outside
    ``names`` are read for their links only. ``progress`` counts clusters read and handshakes done.
    """
    names = list(dict.fromkeys(names))
    coupled = any(cert in SHOWN for name in names for cert in inventory.targets(name))
    others = [name for name in inventory.clusters if name not in names] if coupled else []
    tally = Tally(progress, len(names) + len(others))
    checks, other_links = aio.run(_check_fleet(inventory, names, others, clock, tally, global_cap, readers,
                                               links=coupled))
    report = CheckReport(checked_at=clock.now())
    for name in names:
        one = checks[name]
        report.states += one.states
        report.databases += one.databases
        report.ocsp += [one.ocsp] if one.ocsp is not None else []
        report.held += one.held
        report.warnings += one.warnings
        report.errors += [one.error] if one.error else []
    if coupled:
        answers = {**{name: checks[name].links for name in names}, **other_links}
        read_ok = [a for a in answers.values() if isinstance(a, ClusterLinks)]
        unread = {name: a for name, a in answers.items() if isinstance(a, str)}
        graph = CouplingGraph.build(read_ok, unread)
        report.coupled, report.links_unread = coupled_certificates(
            inventory, ((s.cluster, s.cert_name) for s in report.states), graph)
    return report


async def _check_fleet(inventory: Inventory, names: list[str], others: list[str], clock: Clock, tally: Tally,
                       global_cap: int, readers: int, *, links: bool
                       ) -> tuple[dict[str, _ClusterCheck], dict[str, ClusterLinks | str]]:
    caps = HandshakeCaps(global_cap)
    with ThreadPoolExecutor(max_workers=max(1, min(readers, len(names) + len(others))),
                            thread_name_prefix="check-rest") as pool:
        loop = asyncio.get_running_loop()

        async def in_thread(call: Callable[[], T]) -> T:
            return await loop.run_in_executor(pool, call)

        # the checked clusters' reads are queued first; the others' links (coupling only) behind them
        checks = asyncio.gather(*(_check_one(inventory, name, clock, tally, caps, in_thread, links=links)
                                  for name in names))
        other = asyncio.gather(*(in_thread(partial(_links_of, inventory, name, tally)) for name in others))
        return dict(zip(names, await checks, strict=True)), dict(zip(others, await other, strict=True))


async def _check_one(inventory: Inventory, name: str, clock: Clock, tally: Tally, caps: HandshakeCaps,
                     in_thread: InThread, *, links: bool) -> _ClusterCheck:
    result = _ClusterCheck()
    opened: list[ClusterSession] = []
    listed: list[dict[str, Any]] = []

    def read_shape() -> TargetReads:  # one thread hop: open, read the shape, sort the targets
        try:
            session = open_cluster(inventory, name)
            opened.append(session)
            result.links = session.read_shape(links=links, own_listed=listed)
            return plan_reads(session, list(inventory.targets(name)))
        finally:
            tally.advance()

    def rest_reads(session: ClusterSession) -> _RestReads:
        """The REST reads that need no handshake, then the session closed: one thread hop."""
        try:
            databases, ocsp = unmanaged_due(inventory, session, clock.now(), listed), proxy_ocsp(session)
            # what the cluster holds beside the inventory: judged once the handshakes are done
            return databases, ocsp, read_held(inventory, session)
        finally:
            session.close()

    rest: asyncio.Future[_RestReads] | None = None
    try:
        reads = await in_thread(read_shape)
        session = opened[0]
        tally.add(len(reads.flat))
        settings = session.settings
        # REST reads that need no handshake (unmanaged databases, OCSP, held certificates) run while the
        # handshakes do; only the held certificates' cross-check needs what the handshakes saw
        rest = asyncio.ensure_future(in_thread(partial(rest_reads, session)))
        served = await caps.probe_many(reads.flat, cluster_cap=settings.concurrency,
                                       timeout=settings.handshake_timeout.total_seconds(), on_done=tally.advance)
        result.states = judge_states(inventory, name, reads.merge(served), clock.now())
        result.databases, result.ocsp, held = await rest
        view = judge_held(held, clock.now(), earliest_expiry(result.states))
        result.held, result.warnings = list(view.rows), view.warnings
    except RotationError as exc:
        result.error = exc.message
        if not isinstance(result.links, ClusterLinks):
            result.links = exc.message
        if rest is not None:
            await asyncio.gather(rest, return_exceptions=True)  # it closes the session (not thread-safe)
        elif opened:
            await in_thread(opened[0].close)
    return result


def _links_of(inventory: Inventory, name: str, tally: Tally) -> ClusterLinks | str:
    """A cluster outside the check, read for its replication links only (a link is seen from its replica)."""
    try:
        with open_cluster(inventory, name) as session:
            return session.links_only()
    except RotationError as exc:
        return exc.message
    finally:
        tally.advance()


__all__ = ["CheckReport", "check_clusters"]
