"""The peer steps of the replication companion, each a recorded step, each write with its undo.

* ``add_trust`` / ``drop_old_trust``: a source database's ``authentication_ssl_client_certs`` gains
  the replica cluster's new syncer before the push (the old stays) / loses the old one at the end.
* ``pin``: a replica database's ``replica_sources[i].server_cert`` takes the source's new proxy
  after the push (RS keeps one certificate there: no make-before-break is possible).
* ``force_update``: ``POST /v1/crdbs/{guid}/updates {"force_update": true}`` from the rotating
  cluster, its CRDB task waited for, then every instance in sync; logged as a warning.
* ``wait_in_sync``: the replica side of every watched link, read again until all are in sync.

Fencing: a peer's database takes no fencing token, so every write here happens under this
rotation's lock: ``run.lease.check()`` right before it proves the lock and its fence still name
this rotation (a rotation that lost them writes nothing more). Another rotation of this service
may change the same peer database (two replicas' syncers trusted by one source) or force-update
the same CRDB, so each read-modify-write of a database, and each force update with its wait, also
takes that database's or CRDB's *turn*: a short lock in the service's state, waited for until the
deadline; the turns held are checked with the lock before each write (``Peers.fence``): one that
lapsed during a pause ends the step, nothing written. Each write is recorded before it is made
(``companions.note``, saved to the store first), and one RS refused outright (a 4xx) is marked
undone, so a failure half-way, or a redelivered task, undoes exactly what may have been applied;
an undo first reads the peer and changes only what this rotation wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

from rotation.adapters.cluster import ClusterSession
from rotation.adapters.state import Locker
from rotation.adapters.state.base import Lease
from rotation.core import certs
from rotation.core.coupling import Link, LinkKind
from rotation.core.coupling_data import IN_SYNC, anchors, leaf_fingerprint, parse_database, same_shape, shown_uri
from rotation.core.errors import ClusterAPIError, ReplicationError, RotationError, RotationInProgress, Superseded
from rotation.usecases.coupling import OpenSession
from rotation.usecases.rotate import interrupts
from rotation.usecases.rotate.companions import Memo, note
from rotation.usecases.rotate.run import Run

WRITABLE_SOURCE_FIELDS = ("uri", "server_cert", "replication_tls_sni", "compression", "encryption")
TASK_ENDS = ("finished", "failed")


@dataclass(frozen=True)
class Watched:
    """A link to read back: the replica database holding its entry, and how to find the entry."""

    cluster: str
    db: int
    kind: str
    uri: str
    uid: int
    label: str

    @classmethod
    def of(cls, link: Link) -> Watched:
        assert link.replica.cluster is not None and link.replica.db is not None
        return cls(link.replica.cluster, link.replica.db, str(link.kind), link.entry.uri, link.entry.uid, link.label)


def memo_links(links: list[Watched]) -> list[dict[str, Any]]:
    return [asdict(w) for w in links]


def from_memo(memo: Memo) -> list[Watched]:
    return [Watched(**item) for item in memo.get("links", [])]


@dataclass
class Peers:
    """How the companion reaches the clusters of a rotation: the rotating one through its own session."""

    run: Run
    open_session: OpenSession
    companion: str
    locker: Locker | None = None  # the service's locks: turns on peer databases and CRDBs
    identity: Callable[[str], str] = str  # inventory name -> the cluster's lock identity (REST host:port)
    held: list[tuple[Lease, str]] = field(default_factory=list, init=False)  # the turns held now

    @contextmanager
    def turn(self, key: str, what: str) -> Iterator[None]:
        """This service's only writer of ``key`` meanwhile; another rotation's turn is waited for until
        the deadline (ReplicationError then)."""
        if self.locker is None:
            yield
            return
        run = self.run
        end = run.clock.monotonic() + run.deadline.total_seconds()
        while True:
            stack = ExitStack()
            try:
                lease = stack.enter_context(self.locker.hold(key, "replication", f"rotation {run.record.id}"))
                break
            except RotationInProgress as exc:
                if run.clock.monotonic() >= end:
                    raise ReplicationError(f"{what}: another rotation is changing it ({exc.message})") from exc
                interrupts.check()  # a wait like the others: SIGTERM unwinds here, not at the deadline
                run.clock.sleep(run.options.poll_interval)
        with stack:
            self.held.append((lease, what))
            try:
                yield
            finally:
                self.held.remove((lease, what))

    def fence(self) -> None:
        """Right before a peer write: this rotation's lock, and every turn it holds, are still its own. A turn
        that lapsed (a pause past its lease) may have let another rotation change what was read under it."""
        self.run.lease.check()
        for lease, what in self.held:
            try:
                lease.check()
            except Superseded as exc:
                raise ReplicationError(f"{what}: this rotation's turn lapsed and another rotation took it, so what "
                                       f"was read may have changed: nothing written ({exc.message})") from exc

    def database_turn(self, cluster: str, db: int) -> AbstractContextManager[None]:
        return self.turn(f"bdb:{self.identity(cluster)}/{db}", f"{cluster} db{db}")

    def session(self, cluster: str) -> AbstractContextManager[ClusterSession]:
        if cluster == self.run.session.name:
            return nullcontext(self.run.session)
        return self.open_session(cluster)

    def write(self, phase: str | None, memo: Memo, action: Callable[[], object]) -> dict[str, Any]:
        """One fenced write, recorded (unless ``phase`` is None: an undo) *before* it is made, and made only
        once the record reached the store: a worker that loses the store right after the write could never
        record it, and a redelivered task undoes only what the stored record names. RS refusing it outright
        (a 4xx) changed nothing: the entry is marked undone. The record's entry is returned."""
        if phase is None:
            self.fence()
            action()
            return {"memo": memo}
        entry = note(self.run, self.companion, phase, memo)
        try:
            if self.run.store_down:
                raise ReplicationError("the record cannot be saved (the store is away): no peer change is made "
                                       "that another worker could not undo")
            self.fence()
        except BaseException:
            entry["undone"] = True  # nothing written
            self.run.save()
            raise
        try:
            action()
        except ClusterAPIError as exc:
            if exc.status is not None and exc.status < 500:
                entry["undone"] = True  # refused outright: nothing changed
                self.run.save()
            raise
        return entry


def _listed(raw: dict[str, Any]) -> list[str]:
    parsed = parse_database(raw)
    return list(parsed.client_certs) if parsed else []


def _body(pems: list[str]) -> dict[str, Any]:
    return {"authentication_ssl_client_certs": [{"client_cert": pem} for pem in pems]}


def _short(pem: str) -> str:
    return certs.short_fingerprint(leaf_fingerprint(pem) or "")


# -- syncer: the source databases' trusted client certificates -----------------------------------


def add_trust(peers: Peers, cluster: str, db: int, new_chain: str, old_fp: str | None,
              links: list[Watched]) -> str:
    with peers.run.step(f"replication:{cluster}/db{db}") as step, peers.database_turn(cluster, db), \
            peers.session(cluster) as session:
        listed = _listed(session.database(db))
        if not listed:  # adding one now would start refusing every other client
            step.detail = f"{cluster} db{db} no longer checks client certificates: nothing to add"
            return step.detail
        if anchors(listed, new_chain):
            step.detail = f"{cluster} db{db} already trusts the new syncer (through its issuer): nothing to add"
            return step.detail
        old_entry = next((pem for pem in listed if leaf_fingerprint(pem) == old_fp), None)
        added = same_shape(old_entry, new_chain)
        memo = {"action": "trust", "cluster": cluster, "db": db, "added": added, "links": memo_links(links)}
        peers.write("prepare", memo, lambda: session.update_database(db, _body([*listed, added])))
        step.detail = (f"{cluster} db{db} trusts the new syncer {_short(added)} besides the old one "
                       f"(authentication_ssl_client_certs: {len(listed) + 1})")
        return step.detail


def undo_trust(peers: Peers, memo: Memo) -> str:
    cluster, db, added = memo["cluster"], int(memo["db"]), str(memo["added"]).strip()
    with peers.database_turn(cluster, db), peers.session(cluster) as session:
        listed = _listed(session.database(db))
        kept = [pem for pem in listed if pem.strip() != added]
        if len(kept) == len(listed):
            detail = f"{cluster} db{db} does not list the new syncer: nothing to remove"
        else:
            peers.fence()
            session.update_database(db, _body(kept))
            detail = f"{cluster} db{db} no longer lists the new syncer {_short(added)}"
    return f"{detail}; {wait_in_sync(peers, from_memo(memo), f'{cluster} db{db}')}"


def drop_old_trust(peers: Peers, cluster: str, db: int, new_chain: str, old_fps: set[str | None]) -> str:
    """The old syncer(s) leave the list once the new one is proven; an entry that is an issuer of the
    new certificate stays (it is not the old certificate itself)."""
    with peers.run.step(f"replication:{cluster}/db{db}") as step, peers.database_turn(cluster, db), \
            peers.session(cluster) as session:
        listed = _listed(session.database(db))
        kept = [pem for pem in listed if leaf_fingerprint(pem) not in old_fps or anchors([pem], new_chain)]
        if len(kept) == len(listed):
            step.detail = f"{cluster} db{db} lists no entry that is the old syncer: nothing to remove"
        else:
            peers.fence()
            session.update_database(db, _body(kept))
            dropped = {leaf_fingerprint(pem) or "" for pem in listed} - {leaf_fingerprint(pem) or "" for pem in kept}
            step.detail = f"{cluster} db{db} no longer trusts the old syncer " + \
                ", ".join(certs.short_fingerprint(fp) for fp in sorted(dropped))
        return step.detail


# -- proxy: the replicas' pinned source certificate ---------------------------------------------------


def _sources(raw: dict[str, Any]) -> list[dict[str, Any]]:
    items = raw.get("replica_sources")
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _is_entry(item: dict[str, Any], uri: str) -> bool:
    """Whether RS's entry ``item`` is the one of ``uri`` (kept without its password: ``shown_uri``)."""
    raw = item.get("uri")
    return isinstance(raw, str) and shown_uri(raw) == shown_uri(uri)


def _rewritten(sources: list[dict[str, Any]], uri: str, server_cert: str, where: str) -> list[dict[str, Any]]:
    """``replica_sources`` as a PUT takes it (read-only status fields left out), one pin replaced.
    An entry with its own client certificate cannot be written back (RS never returns its key)."""
    if any(item.get("client_cert") for item in sources):
        raise ReplicationError(f"{where}: an entry of replica_sources has its own client certificate, whose key RS "
                               "never returns: rewriting the list would drop it; update server_cert by hand")
    result = [{k: item[k] for k in WRITABLE_SOURCE_FIELDS if k in item} for item in sources]
    for item in result:
        if _is_entry(item, uri):
            item["server_cert"] = server_cert
    return result


def pin(peers: Peers, link: Link, new_chain: str, links: list[Watched]) -> str:
    watched = Watched.of(link)
    cluster, db = watched.cluster, watched.db
    where = f"{cluster} db{db}"
    with peers.run.step(f"replication:{cluster}/db{db}") as step, peers.database_turn(cluster, db), \
            peers.session(cluster) as session:
        sources = _sources(session.database(db))
        entry = next((item for item in sources if _is_entry(item, link.entry.uri)), None)
        if entry is None:
            raise ReplicationError(f"{where} no longer replicates from {link.entry.uri}")
        old = entry.get("server_cert")
        if isinstance(old, str) and anchors([old], new_chain):
            step.detail = f"{where}: replica_sources[{link.entry.index}].server_cert already trusts the new proxy"
            return step.detail
        new = same_shape(old if isinstance(old, str) else None, new_chain)
        body = {"replica_sources": _rewritten(sources, link.entry.uri, new, where)}
        memo = {"action": "pin", "cluster": cluster, "db": db, "uri": link.entry.uri, "old": old, "new": new,
                "links": memo_links(links)}
        peers.write("follow_up", memo, lambda: session.update_database(db, body))
        step.detail = f"{where} pins the new proxy {_short(new)} in replica_sources[{link.entry.index}].server_cert"
        return step.detail


def undo_pin(peers: Peers, memo: Memo) -> str:
    cluster, db, uri = memo["cluster"], int(memo["db"]), memo["uri"]
    where = f"{cluster} db{db}"
    with peers.database_turn(cluster, db), peers.session(cluster) as session:
        sources = _sources(session.database(db))
        entry = next((item for item in sources if _is_entry(item, uri)), None)
        if entry is None or str(entry.get("server_cert", "")).strip() != str(memo["new"]).strip():
            detail = f"{where} does not pin this rotation's proxy: nothing to restore"
        else:
            body = {"replica_sources": _rewritten(sources, uri, memo["old"], where)}
            peers.fence()
            session.update_database(db, body)
            detail = f"{where} pins the previous proxy {_short(memo['old'] or '')} again"
    return f"{detail}; {wait_in_sync(peers, from_memo(memo), where)}"


# -- Active-Active: the force update ---------------------------------------------------------------


def force_update(peers: Peers, guid: str, name: str, links: list[Watched], phase: str | None = "follow_up") -> str:
    """One CRDB's force update, coordinated by the rotating cluster, then its instances in sync."""
    run = peers.run
    with run.step(f"replication:crdb {name}") as step, peers.turn(f"crdb:{guid}", f"CRDB {name}"):
        run.log.warning("CRDB %s (%s): force update from %s after its %s changed: POST /v1/crdbs/%s/updates "
                        "force_update=true (the docs call it dangerous; run deliberately, one CRDB at a time)",
                        name, guid, run.session.name, run.cert_name, guid)
        memo: Memo = {"action": "force_update", "guid": guid, "name": name, "links": memo_links(links)}
        task: dict[str, Any] = {}
        entry = peers.write(phase, memo, lambda: task.update(run.session.force_update_crdb(guid)))
        entry["memo"]["task"] = str(task.get("id") or "")
        final = _wait_task(run, str(task.get("id") or ""), name)
        if final.get("status") != "finished":
            if not _committed(final):
                entry["undone"] = True  # the task changed nothing anywhere: nothing to undo
            run.save()
            raise ReplicationError(f"CRDB {name}: force update failed: {_task_errors(final)}")
        step.detail = f"task {task.get('id')} finished; {wait_in_sync(peers, links, f'CRDB {name}')}"
        return step.detail


def undo_force_update(peers: Peers, memo: Memo) -> str:
    """Undo of a force update: another one, now that the previous certificate is back."""
    return "again: " + force_update(peers, memo["guid"], memo["name"], from_memo(memo), phase=None)


def _committed(task: dict[str, Any]) -> bool:
    progress = task.get("progress")
    if not isinstance(progress, dict):
        return True  # unknown: assume it may have
    return any(value == "commit-completed" for value in progress.values())


def _task_errors(task: dict[str, Any]) -> str:
    errors = task.get("errors")
    items = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    text = "; ".join(f"{e.get('cluster_name', '?')}: {e.get('error_code', '?')} {str(e.get('description', ''))[:200]}"
                     for e in items[:5])
    return text or f"task {task.get('id')} {task.get('status')}"


def _wait_task(run: Run, task_id: str, name: str) -> dict[str, Any]:
    end = run.clock.monotonic() + run.deadline.total_seconds()
    while True:
        interrupts.check()
        task = run.session.crdb_task(task_id)
        if task.get("status") in TASK_ENDS:
            return task
        if run.clock.monotonic() >= end:
            raise ReplicationError(f"CRDB {name}: force update task {task_id} still {task.get('status')} after "
                                   f"{run.deadline.total_seconds():g}s")
        run.clock.sleep(run.options.poll_interval)


# -- link status -----------------------------------------------------------------------------------


def _statuses(peers: Peers, links: list[Watched]) -> Iterator[tuple[Watched, str, str]]:
    """(link, status, last error) read now from each replica database, one read per database."""
    for cluster, db in dict.fromkeys((w.cluster, w.db) for w in links):
        mine = [w for w in links if (w.cluster, w.db) == (cluster, db)]
        try:
            with peers.session(cluster) as session:
                parsed = parse_database(session.database(db))
        except RotationError as exc:
            yield from ((w, "unreadable", exc.message) for w in mine)
            continue
        for w in mine:
            entries = (parsed.replica_sources if w.kind == LinkKind.REPLICA_OF else parsed.crdt_sources) \
                if parsed else ()
            entry = next((e for e in entries
                          if (e.uri == shown_uri(w.uri) if w.kind == LinkKind.REPLICA_OF else e.uid == w.uid)), None)
            yield (w, entry.status, entry.last_error) if entry else (w, "gone", "no longer listed")


def lagging(peers: Peers, links: list[Watched]) -> list[str]:
    return [f"{w.label}: {status}" + (f" ({error[:200]})" if error else "")
            for w, status, error in _statuses(peers, links) if status != IN_SYNC]


def wait_in_sync(peers: Peers, links: list[Watched], what: str) -> str:
    """Read the links until every one is in sync, or ReplicationError at the deadline."""
    run = peers.run
    end = run.clock.monotonic() + run.deadline.total_seconds()
    while True:
        interrupts.check()
        behind = lagging(peers, links)
        if not behind:
            return f"{len(links)} link(s) in sync"
        if run.clock.monotonic() >= end:
            raise ReplicationError(f"{what}: {len(behind)} link(s) not in sync after "
                                   f"{run.deadline.total_seconds():g}s: " + "; ".join(behind[:5]))
        run.clock.sleep(run.options.poll_interval)


__all__ = ["Peers", "Watched", "add_trust", "drop_old_trust", "force_update", "lagging", "pin", "undo_force_update",
           "undo_pin", "undo_trust", "wait_in_sync"]
