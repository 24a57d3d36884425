"""The replication companion: rotate ``proxy`` or ``syncer`` without breaking Replica Of or Active-Active.

Built for a rotation whose certificate other clusters depend on (the coupling graph,
:mod:`rotation.core.coupling`, read from every inventory cluster just before):

* ``syncer`` of a replica cluster: ``prepare`` adds the new certificate to every source database's
  ``authentication_ssl_client_certs`` (the old one stays), push, verify, ``follow_up`` waits until
  every link is in sync, ``finalize`` removes the old entry.
* ``proxy`` of a source cluster: push, verify, ``follow_up`` pins the new certificate in every
  replica's ``replica_sources[].server_cert``, then waits until every link is in sync.
* Active-Active, after either: a force update of each CRDB the cluster takes part in, one at a
  time, each waited for until every instance is in sync.

Refused before anything changes (a pre-push check): a cluster whose links cannot be read, a
dependent outside the inventory (unless ``allow_unmanaged_peer``: it is then left to the
operator, named in the record's warnings), a dependent link not in sync already, a link whose
source database cannot be told, a ``replica_sources`` list that cannot be written back. The
pipeline undoes every recorded step newest first after a failure (:mod:`replication_steps`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rotation.adapters.cluster import ClusterSession
from rotation.adapters.state import Locker
from rotation.config import Inventory
from rotation.core import certs
from rotation.core.coupling import CouplingGraph, Impact, Link
from rotation.core.coupling_data import anchors
from rotation.core.errors import ReplicationError, RotationError
from rotation.core.model import CertName
from rotation.core.validate import ExtraCheck, ParsedBundle
from rotation.usecases.context import ServiceContext
from rotation.usecases.coupling import OpenSession, read_graph
from rotation.usecases.rotate import replication_steps as steps
from rotation.usecases.rotate.companions import Applied, Companion, Memo, NoCompanion
from rotation.usecases.rotate.replication_steps import Peers, Watched
from rotation.usecases.rotate.run import Run


class ReplicationCompanion(NoCompanion):
    name = "replication"

    def __init__(self, graph: CouplingGraph, impact: Impact, open_session: OpenSession, *,
                 locker: Locker | None = None, identity: Callable[[str], str] = str, follow_up: bool = True) -> None:
        """``locker`` and ``identity``: turns on peer databases and CRDBs (see :mod:`replication_steps`).
        ``follow_up=False`` (tests only) skips the follow-up: proof that the simulator notices."""
        self.graph, self.impact, self.open_session, self.follow = graph, impact, open_session, follow_up
        self.locker, self.identity = locker, identity

    def _peers(self, run: Run) -> Peers:
        return Peers(run, self.open_session, self.name, self.locker, self.identity)

    def _trust_targets(self) -> dict[tuple[str, int], list[Link]]:
        """Source databases that check the rotating syncer, with the links through each."""
        targets: dict[tuple[str, int], list[Link]] = {}
        for link in self.impact.trusts:
            if link.source.cluster is not None and link.source.db is not None:
                targets.setdefault((link.source.cluster, link.source.db), []).append(link)
        return targets

    # -- before anything changes -------------------------------------------------------------------

    def problems(self, allow_unmanaged: bool) -> list[str]:
        impact, where = self.impact, f"{self.impact.cluster}/{self.impact.cert}"
        found = [f"the replication links of {u} could not be read, so what depends on {where} is unknown"
                 for u in impact.unread]
        if impact.unmanaged and not allow_unmanaged:
            found.append(f"{', '.join(impact.unmanaged)} depend(s) on {where} but is outside the inventory: rotating "
                         "would break replication there; add it to the inventory, or pass --allow-unmanaged-peer "
                         "and update it by hand")
        found += [f"link {link.label} is {link.entry.status}"
                  + (f" ({link.entry.last_error[:200]})" if link.entry.last_error else "")
                  + " before the rotation: fix it first, or the rotation could not prove it keeps replication"
                  for link in impact.watch if not link.in_sync]
        found += [f"cannot tell which database of {link.source.cluster} {link.label} replicates from "
                  f"(none on port {link.entry.port})" for link in impact.trusts if link.source.db is None]
        for link in impact.pins:
            db = self.graph.clusters[str(link.replica.cluster)].database(link.replica.db)
            if db is not None and any(entry.own_client_cert for entry in db.replica_sources):
                found.append(f"{link.replica.label}: replica_sources has an entry with its own client certificate, "
                             "whose key RS never returns, so the list cannot be rewritten; update server_cert by hand")
        return found

    def checks(self, run: Run) -> Sequence[ExtraCheck]:
        """Refuses the whole rotation (nothing pushed, no peer touched) when replication cannot be kept."""
        found = self.problems(run.options.allow_unmanaged_peer)
        if found:
            refusal = ReplicationError(f"{self.impact.cluster}/{self.impact.cert}: replication: " + "; ".join(found)
                                       + "; nothing is pushed")
            refusal.retryable = bool(self.impact.unread)  # a peer that could not be read may answer later
            raise refusal
        return ()

    def plan(self, run: Run, bundle: ParsedBundle) -> list[str]:
        chain, impact = certs.certs_to_pem(bundle.certificates), self.impact
        lines = []
        for (cluster, db), _ in self._trust_targets().items():
            listed = self.graph.clusters[cluster].database(db)
            if listed is not None and anchors(list(listed.client_certs), chain):
                lines.append(f"{cluster} db{db} already trusts the new syncer through its issuer")
            else:
                lines.append(f"before the push: {cluster} db{db} adds the new syncer to "
                             "authentication_ssl_client_certs (the old one stays), and drops the old one at the end")
        for link in impact.pins:
            if anchors([link.entry.server_cert], chain):
                lines.append(f"{link.replica.label}: server_cert already trusts the new proxy")
            else:
                lines.append(f"after the push: {link.replica.label} pins the new proxy in "
                             f"replica_sources[{link.entry.index}].server_cert")
        lines += [f"after the push: CRDB {crdb.name} ({crdb.guid}) force update from {impact.cluster}, then its "
                  f"{len(crdb.instances)} instance(s) in sync" for crdb in impact.crdbs]
        if impact.watch:
            lines.append(f"every link in sync within {run.deadline.total_seconds():g}s: "
                         + ", ".join(link.label for link in impact.watch))
        lines += [f"left to the operator (outside the inventory): {who}" for who in impact.unmanaged]
        return lines

    # -- around the push ---------------------------------------------------------------------------

    def prepare(self, run: Run, bundle: ParsedBundle) -> Applied | None:
        run.record.warnings += [f"replication: {who} is outside the inventory: not followed, update it by hand "
                                f"after this {self.impact.cert} rotation" for who in self.impact.unmanaged]
        if self.impact.cert is not CertName.SYNCER or not self._trust_targets():
            return None
        peers, chain = self._peers(run), certs.certs_to_pem(bundle.certificates)
        done = [steps.add_trust(peers, cluster, db, chain, run.record.old_fingerprint, [Watched.of(x) for x in links])
                for (cluster, db), links in self._trust_targets().items()]
        return Applied("; ".join(done), memo=None)

    def follow_up(self, run: Run, bundle: ParsedBundle) -> Applied | None:
        if not self.follow:
            return Applied("follow-up skipped (test flag): peers not updated", memo=None)
        impact, peers, chain = self.impact, self._peers(run), certs.certs_to_pem(bundle.certificates)
        done = [steps.pin(peers, link, chain, [Watched.of(link)]) for link in impact.pins]
        for crdb in impact.crdbs:  # one at a time: the docs ask for no other CRDB update in between
            links = [Watched.of(link) for link in impact.watch if link.crdb == crdb.guid]
            done.append(steps.force_update(peers, crdb.guid, crdb.name, links))
        if impact.watch:
            with run.step("replication:sync") as step:
                step.detail = steps.wait_in_sync(peers, [Watched.of(link) for link in impact.watch], "replication")
            done.append(step.detail)
        return Applied("; ".join(done), memo=None) if done else None

    def finalize(self, run: Run, bundle: ParsedBundle) -> str | None:
        if self.impact.cert is not CertName.SYNCER or not self._trust_targets():
            return None
        peers, chain = self._peers(run), certs.certs_to_pem(bundle.certificates)
        olds = {run.record.old_fingerprint, *_left_trusted(run)}
        done = [steps.drop_old_trust(peers, cluster, db, chain, olds) for cluster, db in self._trust_targets()]
        behind = steps.lagging(peers, [Watched.of(link) for link in self.impact.watch])
        if behind:  # a warning (finalize): the new certificate is verified and trusted
            raise ReplicationError("after the old syncer was removed: " + "; ".join(behind[:5]))
        return "; ".join(done)

    def undo(self, run: Run, memo: Memo) -> str:
        undo = {"trust": steps.undo_trust, "pin": steps.undo_pin, "force_update": steps.undo_force_update}
        action = undo.get(str(memo.get("action")))
        if action is None:
            raise ReplicationError(f"unknown replication step {memo.get('action')!r} in the record")
        return action(self._peers(run), memo)


def _left_trusted(run: Run) -> set[str | None]:
    """The old syncers earlier rotations of this one could not remove (their finalize failed: a warning): this
    rotation's finalize removes them too, else a peer trusts them for good."""
    try:
        earlier = run.store.history(run.record.cluster, str(run.cert_name))
    except RotationError as exc:  # the store is away: they wait for the next rotation
        run.log.warning("earlier rotations not read: %s", exc.message)
        return set()
    return {record.old_fingerprint for record in earlier if record.id != run.record.id
            and any(step.name == "finalize:replication" and not step.ok for step in record.steps)}


def replication_companion(ctx: ServiceContext, inventory: Inventory, session: ClusterSession,
                          cert_name: CertName) -> Companion | None:
    """The companion of a ``proxy`` or ``syncer`` rotation that other clusters depend on (None otherwise)."""
    if not cert_name.is_coupled:
        return None

    def open_session(name: str) -> ClusterSession:
        return ctx.sessions.open(inventory, name)

    graph = read_graph(inventory, open_session, own=session, reuse=ctx.isolated_links)
    impact = graph.impact(session.name, cert_name)
    if not impact.coupled and not impact.unread:
        return None
    return ReplicationCompanion(graph, impact, open_session, locker=ctx.state,
                                identity=lambda name: inventory.cluster(name).identity)


__all__ = ["ReplicationCompanion", "replication_companion"]
