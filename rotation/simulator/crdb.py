"""Active-Active databases across simulated clusters: creation, the force update, the view each
participant keeps of its peers.

Each participant's instance lives on the database of the CRDB's port on that cluster. What an
instance trusts is what the coordinator told it at the last create or update: each peer's
``proxy`` certificate (the ``server_cert`` of its ``crdt_sources[]`` entry) and each peer's
``syncer`` certificate (its ``authentication_ssl_crdt_certs``, trusted as client certificates
by its database listener). So a ``proxy`` or ``syncer`` change on one participant breaks the
links of the others until ``POST /v1/crdbs/{guid}/updates`` with ``force_update: true``.

A create or update is a CRDB task run by the cluster that received it, the coordinator, over
real HTTPS with each participant's credentials (:mod:`peers`):

1. learn every participant's current certificates: ``GET /v1/cluster`` (``proxy_certificate``,
   ``syncer_certificate``); one unreachable or refusing participant fails the task and nothing
   is changed anywhere;
2. commit configuration version N+1 on every participant: ``PUT /_sim/crdbs/{guid}`` (the
   simulator's control route standing in for RS's CRDB coordinator protocol); a participant that
   refuses (``fail_next_db_update``) keeps its old view, the others take the new one, the task
   fails naming it.

A force update is logged as a warning: the docs say it "can cause unintended and dangerous
changes". ``sim.crdbs.force_updates`` counts them per CRDB.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

from . import peers
from .crdb_model import Crdb, CrdbRejected, CrdbTask, Participant, parse_create, parse_participant
from .links import IN_SYNC, SyncSource
from .replication import CrdtMembership
from .tls import utcnow

if TYPE_CHECKING:
    from .host import Simulator

log = logging.getLogger("rotation.simulator.crdb")
MAX_TASKS = 200
PARTICIPANT_KEYS = frozenset({"id", "cluster", "compression", "db_uid"})


class Crdbs:
    """The CRDBs one cluster takes part in, and the tasks it coordinated."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.crdbs: dict[str, Crdb] = {}
        self.tasks: dict[str, CrdbTask] = {}
        self.force_updates: Counter[str] = Counter()
        self.peer_timeout = 5.0

    def get(self, guid: str) -> Crdb:
        crdb = self.crdbs.get(guid)
        if crdb is None:
            raise CrdbRejected("crdb_not_found", f"Active-Active database {guid} does not exist here", 404)
        return crdb

    def _local_database(self, port: int) -> int:
        db = next((d for d in self.sim.config.database_list if d.port == port), None)
        if db is None or not db.tls:
            raise CrdbRejected("no_such_database", f"{self.sim.config.fqdn} has no TLS database on port {port} "
                                                   "to hold the instance")
        return db.uid

    # -- requests (on the loop) --------------------------------------------------------------------

    def create(self, body: Any) -> CrdbTask:
        name, port, participants = parse_create(body)
        local = next((p for p in participants if p.name == self.sim.config.fqdn), None)
        if local is None:
            raise CrdbRejected("not_participant", f"instances: this cluster ({self.sim.config.fqdn}) must take part")
        self._local_database(port)
        crdb = Crdb(guid=str(uuid.uuid4()), name=name, port=port, participants=participants)
        return self._start(crdb, "create_crdb")

    def update(self, guid: str, force: bool) -> CrdbTask:
        crdb = self.get(guid)
        if not force:  # nothing the simulator models changed: no new configuration version
            task = self._new_task(guid, "update_crdb")
            self._finish(task, [])
            return task
        self.force_updates[guid] += 1
        log.warning("CRDB %s (%s): force update requested on %s; the docs warn force_update can cause "
                    "unintended and dangerous changes. Every participant takes configuration version %d",
                    guid, crdb.name, self.sim.config.fqdn, crdb.config_version + 1)
        return self._start(crdb, "update_crdb")

    def _new_task(self, guid: str, operation: str) -> CrdbTask:
        if len(self.tasks) >= MAX_TASKS:  # RS keeps finished tasks for a while only
            for old in [t for t in self.tasks.values() if t.done.is_set()][: MAX_TASKS // 2]:
                del self.tasks[old.id]
        task = CrdbTask(id=str(uuid.uuid4()), crdb_guid=guid, operation=operation)
        self.tasks[task.id] = task
        return task

    def _start(self, crdb: Crdb, operation: str) -> CrdbTask:
        task = self._new_task(crdb.guid, operation)
        self.sim.replication._spawn(self._run(task, crdb))
        return task

    def _finish(self, task: CrdbTask, errors: list[dict[str, str]]) -> None:
        task.errors, task.ended = errors, utcnow().isoformat()
        task.status = "failed" if errors else "finished"
        task.done.set()
        if errors:
            log.warning("CRDB %s: task %s (%s) failed: %s", task.crdb_guid, task.id, task.operation,
                        "; ".join(f"{e['cluster_name']}: {e['error_code']}" for e in errors))

    # -- the coordinator ---------------------------------------------------------------------------

    async def _run(self, task: CrdbTask, crdb: Crdb) -> None:
        task.status, task.started = "started", utcnow().isoformat()
        try:
            learned = await asyncio.gather(*(self._learn(task, p) for p in crdb.participants))
            errors = [error for _, error in learned if error]
            if errors:
                self._finish(task, errors)
                return
            config = self._config(crdb, [certs for certs, _ in learned])
            errors = [e for e in await asyncio.gather(*(self._commit(task, p, config) for p in crdb.participants)) if e]
            self._finish(task, errors)
        except Exception as exc:  # a bug must still end the task, never leave it "started"
            log.exception("CRDB task %s failed", task.id)
            self._finish(task, [{"cluster_name": self.sim.config.fqdn, "error_code": "internal_error",
                                 "description": f"{type(exc).__name__}: {exc}"}])

    async def _learn(self, task: CrdbTask, p: Participant) -> tuple[dict[str, str], dict[str, str] | None]:
        task.progress[p.name] = "collecting certificates"
        if p.name == self.sim.config.fqdn:
            certs = self.sim.state.certs
            return {"proxy": certs["proxy"].chain_pem, "syncer": certs["syncer"].chain_pem}, None
        try:
            cluster = await peers.call(p.peer, "GET", "/v1/cluster", timeout=self.peer_timeout)
            return {"proxy": str(cluster["proxy_certificate"]), "syncer": str(cluster["syncer_certificate"])}, None
        except peers.PeerError as exc:
            return {}, {"cluster_name": p.name, "error_code": exc.error_code, "description": exc.description}
        except (KeyError, TypeError) as exc:
            return {}, {"cluster_name": p.name, "error_code": "invalid_answer",
                        "description": f"GET /v1/cluster of {p.name} has no {exc}"}

    def _config(self, crdb: Crdb, certs: list[dict[str, str]]) -> dict[str, Any]:
        instances = []
        for participant, pems in zip(crdb.participants, certs, strict=True):
            body = participant.internal()
            body.update(proxy_certificate=pems["proxy"], syncer_certificate=pems["syncer"])
            instances.append(body)
        return {"guid": crdb.guid, "name": crdb.name, "port": crdb.port,
                "config_version": crdb.config_version + 1, "instances": instances}

    async def _commit(self, task: CrdbTask, p: Participant, config: dict[str, Any]) -> dict[str, str] | None:
        task.progress[p.name] = "committing"
        try:
            if p.name == self.sim.config.fqdn:
                self.apply(config)
            else:
                await peers.call(p.peer, "PUT", f"/_sim/crdbs/{config['guid']}", config, timeout=self.peer_timeout)
        except peers.PeerError as exc:
            return {"cluster_name": p.name, "error_code": exc.error_code, "description": exc.description}
        except CrdbRejected as exc:
            return {"cluster_name": p.name, "error_code": exc.error_code, "description": exc.description}
        task.progress[p.name] = "commit-completed"
        return None

    # -- a participant -----------------------------------------------------------------------------

    def apply(self, config: Any) -> None:
        """Take a configuration from the coordinator (or refuse it: an injected failure, a version
        not newer than the one held)."""
        injected = self.sim.replication.take_injected_failure()
        if injected is not None:
            raise CrdbRejected(injected[1], injected[2], injected[0])
        try:
            guid, port, version = str(config["guid"]), int(config["port"]), int(config["config_version"])
            items = list(config["instances"])
            certs = {int(i["id"]): (str(i["proxy_certificate"]), str(i["syncer_certificate"])) for i in items}
            participants = [parse_participant({k: v for k, v in item.items() if k in PARTICIPANT_KEYS}, index, port)
                            for index, item in enumerate(items)]
            for participant, item in zip(participants, items, strict=True):
                participant.id = int(item["id"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CrdbRejected("invalid_schema", f"not a CRDB configuration: {exc}") from exc
        held = self.crdbs.get(guid)
        if held is not None and version <= held.config_version:
            raise CrdbRejected("stale_configuration", f"configuration version {version} is not newer than "
                                                      f"{held.config_version}", 409)
        local = next((p for p in participants if p.name == self.sim.config.fqdn), None)
        if local is None:
            raise CrdbRejected("not_participant", f"{self.sim.config.fqdn} is not an instance of {guid}")
        db_uid = self._local_database(port)
        self.crdbs[guid] = Crdb(guid=guid, name=str(config["name"]), port=port, participants=participants,
                                config_version=version, local_id=local.id, local_db_uid=db_uid)
        sources = [SyncSource(uid=p.id, uri=f"redis://{p.replication_endpoint}", server_cert=certs[p.id][0],
                              replication_tls_sni=p.replication_tls_sni, compression=p.compression)
                   for p in participants if p is not local]
        peer_syncers = [certs[p.id][1] for p in participants if p is not local]
        self.sim.replication.set_crdt(db_uid, CrdtMembership(guid, local.id, version), sources, peer_syncers)
        log.info("%s: CRDB %s instance %d on database %d at configuration version %d",
                 self.sim.config.fqdn, guid, local.id, db_uid, version)

    async def health_report(self, guid: str) -> list[dict[str, Any]]:
        """The local participant's report, its links checked first."""
        crdb = self.get(guid)
        await self.sim.replication.refresh([crdb.local_db_uid])
        sources = {s.uid: s for s in self.sim.replication.db(crdb.local_db_uid).crdt_sources}
        connections = []
        for p in crdb.participants:
            source = sources.get(p.id)
            if source is None:
                continue
            up = source.status == IN_SYNC
            connections.append({"name": p.name, "status": "ok" if up else "error",
                                "replication_links": [{"link_uid": f"{crdb.local_db_uid}:{p.id}",
                                                       "status": "up" if up else "down"}],
                                **({} if up else {"connection_error": source.last_error})})
        public = crdb.public()
        return [{"active_config_version": crdb.config_version, "cluster_name": self.sim.config.fqdn,
                 "name": crdb.name, "guid": guid, "connections": connections,
                 "configurations": [{**public, "version": crdb.config_version, "status": "commit-completed"}]}]

    # -- thread-safe facade ------------------------------------------------------------------------

    def _await(self, coro: Any, timeout: float) -> Any:
        loop = self.sim._loop
        if loop is None:
            coro.close()
            raise RuntimeError("the simulator is not running")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    def create_crdb(self, body: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """``POST /v1/crdbs`` from any thread, waiting for the task: the finished task object."""
        task = self.sim._call(lambda: self.create(body))
        return self.wait_task(task.id, timeout)

    def force_update(self, guid: str, timeout: float = 30.0) -> dict[str, Any]:
        """``POST /v1/crdbs/{guid}/updates {"force_update": true}`` from any thread, waiting."""
        task = self.sim._call(lambda: self.update(guid, True))
        return self.wait_task(task.id, timeout)

    def wait_task(self, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
        async def wait() -> dict[str, Any]:
            task = self.tasks[task_id]
            await asyncio.wait_for(task.done.wait(), timeout)
            return task.public()

        return self._await(wait(), timeout + 1)

    def crdb_objects(self) -> list[dict[str, Any]]:
        return self.sim._call(lambda: [crdb.public() for crdb in self.crdbs.values()])

    def force_update_count(self, guid: str) -> int:
        return self.sim._call(lambda: self.force_updates[guid])
