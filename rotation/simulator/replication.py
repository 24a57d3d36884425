"""Replication links of one simulated cluster: Replica Of and the local side of Active-Active.

Per database (``sim.replication``):

* as a **source**: ``authentication_ssl_client_certs`` (and, for an Active-Active instance, the
  peers' syncer certificates in ``authentication_ssl_crdt_certs``). When the list is not empty
  (and ``enforce_client_authentication`` is ``enabled``) the database listener asks for a client
  certificate (CERT_OPTIONAL) and OpenSSL accepts only one equal to or issued by an entry; a
  connection that sent none is dropped before its first command is answered. Probes that only
  read the served certificate still complete their handshake.
* as a **replica**: ``replica_sources[]`` / ``crdt_sources[]`` (:class:`links.SyncSource`); the
  cluster's syncer reconnects to each source over real TLS (:func:`links.check`), periodically
  every ``interval`` seconds (started with the first link) and on demand: every ``GET
  /v1/bdbs`` and ``GET /v1/bdbs/{uid}`` checks the links it shows first (concurrently, each
  bounded by ``check_timeout``), ``POST /_sim/links {"action": "check"}`` and
  :meth:`Replication.check_now` check them all.

Faults: ``fail_next_db_update(count, status)`` refuses the next writes of this cluster's
databases (``PUT /v1/bdbs/{uid}`` and an Active-Active coordinator's apply), and
``freeze_link(db_uid, source_uid=None)`` makes links never return to sync once the certificate
they pin or present differs from the one at the time of the fault (back on those, they sync).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import links
from .bdb_config import BdbChanges, parse_update
from .links import ContextCache, SyncSource
from .tls import Material

if TYPE_CHECKING:
    from .host import Simulator

log = logging.getLogger("rotation.simulator.replication")

INJECTED_CODES = {409: "db_busy", 500: "internal_error", 503: "service_unavailable"}


@dataclass
class CrdtMembership:
    guid: str
    replica_id: int
    config_version: int


@dataclass
class DbLinks:
    """The replication fields of one database."""

    client_certs: list[str] = field(default_factory=list)
    enforce_client_authentication: str = "enabled"
    replica_sources: list[SyncSource] = field(default_factory=list)
    replica_sync: str = "disabled"
    crdt: CrdtMembership | None = None
    crdt_certs: list[str] = field(default_factory=list)
    crdt_sources: list[SyncSource] = field(default_factory=list)

    def trusted_clients(self) -> list[str]:
        certs = self.client_certs if self.enforce_client_authentication == "enabled" else []
        return certs + self.crdt_certs

    def checked_sources(self) -> list[SyncSource]:
        return (self.replica_sources if self.replica_sync == "enabled" else []) + self.crdt_sources


class Replication:
    """State and syncer of one :class:`Simulator`; coroutines run on its loop, the
    plain methods at the end are the thread-safe facade for tests and the fleet."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.dbs: dict[int, DbLinks] = {db.uid: DbLinks() for db in sim.config.database_list}
        self.interval = 2.0
        self.check_timeout = 3.0
        self.fail_queue: deque[int] = deque()
        self._contexts = ContextCache()
        self._periodic: asyncio.Task[None] | None = None
        self._checked: asyncio.Condition | None = None  # notified after every check
        self._sequence = 0  # numbers the checks, so a read never trusts one older than itself

    def db(self, uid: int) -> DbLinks:
        try:
            return self.dbs[uid]
        except KeyError:
            raise ValueError(f"no database with uid {uid}") from None

    # -- what GET /v1/bdbs shows -------------------------------------------------------------------

    def bdb_fields(self, uid: int) -> dict[str, Any]:
        state = self.dbs[uid]
        replica = [source.public() for source in state.replica_sources]
        fields: dict[str, Any] = {
            "authentication_ssl_client_certs": [{"client_cert": pem} for pem in state.client_certs],
            "enforce_client_authentication": state.enforce_client_authentication,
            "replica_sources": replica,
            "replica_sync": state.replica_sync,
            # deprecated spellings (before 5.0.1), still returned: status subset of the same links
            "sync": state.replica_sync,
            "sync_sources": [{k: s[k] for k in ("uid", "uri", "compression", "status", "rdb_transferred",
                                                "rdb_size", "last_update", "lag", "last_error")} for s in replica],
            "crdt": state.crdt is not None,
        }
        if state.crdt is not None:
            fields.update({
                "crdt_guid": state.crdt.guid, "crdt_replica_id": state.crdt.replica_id,
                "crdt_config_version": state.crdt.config_version, "crdt_sync": "enabled",
                "crdt_sources": [source.public() for source in state.crdt_sources],
                "authentication_ssl_crdt_certs": [{"client_cert": pem} for pem in state.crdt_certs],
            })
        return fields

    # -- writes ------------------------------------------------------------------------------------

    def take_injected_failure(self) -> tuple[int, str, str] | None:
        """(status, error_code, description) of a queued ``fail_next_db_update``, consumed."""
        if not self.fail_queue:
            return None
        status = self.fail_queue.popleft()
        return status, INJECTED_CODES.get(status, "injected_failure"), f"Injected failure ({status})"

    def apply(self, uid: int, changes: BdbChanges) -> None:
        state = self.db(uid)
        if changes.client_certs is not None:
            state.client_certs = changes.client_certs
        if changes.enforce_client_authentication is not None:
            state.enforce_client_authentication = changes.enforce_client_authentication
        if changes.replica_sources is not None:
            state.replica_sources = _carry_status(state.replica_sources, changes.replica_sources)
            if changes.replica_sync is None:
                state.replica_sync = "enabled" if state.replica_sources else "disabled"
        if changes.replica_sync is not None:
            state.replica_sync = changes.replica_sync
        log.info("%s: database %s replication settings updated (%d source(s), %d client certificate(s))",
                 self.sim.config.fqdn, uid, len(state.replica_sources), len(state.client_certs))
        self.kick([uid])

    def set_crdt(self, uid: int, membership: CrdtMembership | None, sources: list[SyncSource],
                 certs: list[str]) -> None:
        """The Active-Active coordinator's view for the local instance (see :mod:`crdb`)."""
        state = self.db(uid)
        for source in sources:
            source.role = "peer"
        state.crdt, state.crdt_certs = membership, certs
        state.crdt_sources = _carry_status(state.crdt_sources, sources)
        self.kick([uid])

    # -- the listener side -------------------------------------------------------------------------

    def listener_context(
        self, uid: int, material: Material, minimum: str, ciphers: str | None
    ) -> ssl.SSLContext | None:
        """An mTLS server context for database ``uid``, or None when it authenticates no client."""
        state = self.dbs.get(uid)
        trusted = state.trusted_clients() if state is not None else []
        if not trusted:
            return None
        key = ("server", material.fingerprint, minimum, ciphers or "", *map(links.pem_digest, trusted))
        return self._contexts.get(key, lambda: links.mtls_server_context(
            material.chain_pem, material.key_pem or "", minimum, ciphers, trusted))

    def admitted(self, uid: int, writer: asyncio.StreamWriter) -> bool:
        """False for a connection that sent no client certificate to a database requiring one."""
        state = self.dbs.get(uid)
        if state is None or not state.trusted_clients():
            return True
        ssl_object = writer.get_extra_info("ssl_object")
        return ssl_object is not None and bool(ssl_object.getpeercert(binary_form=True))

    # -- the syncer side ---------------------------------------------------------------------------

    def _client_pair(self, source: SyncSource) -> tuple[str, str]:
        if source.client_cert and source.client_key:
            return source.client_cert, source.client_key
        syncer = self.sim.state.certs["syncer"]
        return syncer.chain_pem, syncer.key_pem or ""

    async def _check(self, source: SyncSource) -> None:
        context, client_pem = None, None
        try:
            if source.server_cert is not None:
                client_pem, client_key = self._client_pair(source)
                server_cert = source.server_cert
                key = ("client", links.pem_digest(server_cert), links.pem_digest(client_pem))
                context = self._contexts.get(key, lambda: links.client_context(server_cert, client_pem, client_key))
            await links.check(source, context, client_pem, self.check_timeout)
        except (OSError, ValueError) as exc:  # e.g. a pair OpenSSL will not load: the syncer cannot start
            source.status, source.last_error = links.OUT_OF_SYNC, f"syncer cannot connect: {exc}"
        condition = self._condition()
        async with condition:
            condition.notify_all()

    def _condition(self) -> asyncio.Condition:
        if self._checked is None:
            self._checked = asyncio.Condition()
        return self._checked

    async def _fresh(self, source: SyncSource, after: int) -> None:
        """A check of ``source`` started at or after sequence ``after``: joins one in flight if it
        is recent enough, else lets the older one end (one check per link at a time) and starts one."""
        while True:
            task = source.checking
            if task is None or task.done():
                self._sequence += 1
                source.check_sequence, source.checking = self._sequence, self._spawn(self._check(source))
                task = source.checking
            elif source.check_sequence < after:
                await asyncio.shield(task)
                continue
            await asyncio.shield(task)
            return

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)  # always called on the simulator's loop
        self.sim._tasks.add(task)  # cancelled by the simulator's stop()
        task.add_done_callback(self.sim._tasks.discard)
        return task

    async def refresh(self, uids: Iterable[int] | None = None) -> None:
        """Check every link of these databases now (one check per link at a time)."""
        sources = [s for uid in (self.dbs if uids is None else uids) for s in self.dbs[uid].checked_sources()]
        after = self._sequence + 1  # a check that started before this call may predate a change
        if sources:
            await asyncio.gather(*(self._fresh(s, after) for s in sources))

    def kick(self, uids: Iterable[int]) -> None:
        """Check these databases' links soon and make sure the periodic checks run."""
        if self.sim._loop is None:  # not started: the first GET or check will do it
            return
        if self._periodic is None or self._periodic.done():
            self._periodic = self._spawn(self._every_interval())
        self._spawn(self.refresh(list(uids)))

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.refresh()

    # -- faults ------------------------------------------------------------------------------------

    def freeze(self, uid: int, source_uid: int | None = None, frozen: bool = True) -> None:
        state = self.db(uid)
        for source in state.replica_sources + state.crdt_sources:
            if source_uid is None or source.uid == source_uid:
                client = self._client_pair(source)[0] if source.server_cert is not None else None
                source.frozen = links.identity(source, client) if frozen else None

    def clear(self) -> None:
        self.fail_queue.clear()
        for state in self.dbs.values():
            for source in state.replica_sources + state.crdt_sources:
                source.frozen = None

    def snapshot(self) -> list[dict[str, Any]]:
        """Every link of this cluster: database, kind, source uid and uri, status, last_error."""
        rows = []
        for uid, state in sorted(self.dbs.items()):
            for kind, sources in (("replica_of", state.replica_sources), ("crdt", state.crdt_sources)):
                rows += [{"db": uid, "kind": kind, "source": s.uid, "uri": s.uri, "status": s.status,
                          "last_error": s.last_error, "frozen": s.frozen is not None} for s in sources]
        return rows

    # -- thread-safe facade ------------------------------------------------------------------------

    def configure(self, uid: int, body: dict[str, Any]) -> None:
        """What ``PUT /v1/bdbs/{uid}`` does (same checks; raises ``BdbRejected``), from any thread."""
        db = next((d for d in self.sim.config.database_list if d.uid == uid), None)
        if db is None:
            raise ValueError(f"no database with uid {uid}")
        changes = parse_update(body, db.name, db.tls)
        self.sim._call(lambda: self.apply(uid, changes))

    def check_now(self, uids: Iterable[int] | None = None) -> list[dict[str, Any]]:
        """Check the links now (from any thread) and return :meth:`snapshot`."""
        wanted = None if uids is None else list(uids)
        self.sim._run(self.refresh(wanted))
        return self.sim._call(self.snapshot)

    def wait_for_status(self, uid: int, status: str, source_uid: int | None = None,
                        timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait, without checking anything, until every link of database ``uid`` (or only
        ``source_uid``) has ``status`` after some check (periodic or on demand); its rows."""
        def rows() -> list[dict[str, Any]]:
            return [r for r in self.snapshot() if r["db"] == uid and source_uid in (None, r["source"])]

        async def wait() -> list[dict[str, Any]]:
            async with self._condition():
                await asyncio.wait_for(self._condition().wait_for(
                    lambda: bool(rows()) and all(r["status"] == status for r in rows())), timeout)
            return rows()

        loop = self.sim._loop
        if loop is None:
            raise RuntimeError("the simulator is not running")
        return asyncio.run_coroutine_threadsafe(wait(), loop).result(timeout + 1)

    def fail_next_db_update(self, count: int = 1, status: int = 409) -> None:
        if count < 0 or not 400 <= status <= 599:
            raise ValueError("fail_next_db_update needs count >= 0 and a 4xx/5xx status")
        self.sim._call(lambda: self.fail_queue.extend([status] * count))

    def freeze_link(self, uid: int, source_uid: int | None = None, frozen: bool = True) -> None:
        self.sim._call(lambda: self.freeze(uid, source_uid, frozen))

    def clear_faults(self) -> None:
        self.sim._call(self.clear)

    def links(self) -> list[dict[str, Any]]:
        return self.sim._call(self.snapshot)


def _carry_status(old: list[SyncSource], new: list[SyncSource]) -> list[SyncSource]:
    """A source whose uri is unchanged keeps its status and freeze until the next check."""
    previous = {source.uri: source for source in old}
    for source in new:
        before = previous.get(source.uri)
        if before is not None:
            source.status, source.last_error, source.lag = before.status, before.last_error, before.lag
            source.last_update, source.frozen = before.last_update, before.frozen
    return new
