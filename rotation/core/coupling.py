"""The replication coupling graph: which link depends on which cluster's ``proxy``, ``syncer`` or ``api``.

Pure: built from what every inventory cluster's REST API answered (:mod:`coupling_data`).

* **Replica Of**: a replica database's ``replica_sources[i]`` pins the source cluster's
  ``proxy`` (``server_cert``), and the source database trusts the replica cluster's ``syncer``
  when it checks clients (``authentication_ssl_client_certs``, unless the entry presents its
  own ``client_cert``). A link is seen from its replica's side only: the source is found by the
  entry's address or FQDN (node addresses, database endpoints, ``redis-<port>.<fqdn>``), else by
  the certificate it pins (fingerprint of the cluster's current proxy).
* **Active-Active**: every instance pins every peer's ``proxy`` and trusts every peer's
  ``syncer`` as of the CRDB's last update, so both certificates of every participant need a force
  update of the CRDB; peers may also verify each other's ``api`` (``trusted_ca``, RS 8.2).
  Participants are matched by the FQDN, URL or replication endpoint their instance names.

A link whose other end is no inventory cluster is kept with ``cluster=None``: rotating a
certificate it depends on is refused unless the operator allows unmanaged peers.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rotation.core.coupling_data import (
    IN_SYNC,
    ClusterLinks,
    CrdbInfo,
    DbLinks,
    Instance,
    SourceEntry,
    anchors,
    fingerprints,
    leaf_fingerprint,
)
from rotation.core.model import CertName


class LinkKind(enum.StrEnum):
    REPLICA_OF = "replica_of"
    ACTIVE_ACTIVE = "active_active"


@dataclass(frozen=True)
class End:
    """One end of a link: an inventory cluster (and database) or, with ``cluster=None``, an outsider."""

    cluster: str | None
    where: str  # host:port (or FQDN) as the link names it
    db: int | None = None
    unmatched: str = "not in the inventory"  # why an outsider has no cluster

    @property
    def managed(self) -> bool:
        return self.cluster is not None

    @property
    def label(self) -> str:
        if self.cluster is None:
            return f"{self.where} ({self.unmatched})"
        return f"{self.cluster} db{self.db}" if self.db is not None else self.cluster


@dataclass(frozen=True)
class Link:
    """Data flows from ``source`` to ``replica``; the entry lives in the replica database."""

    kind: LinkKind
    source: End
    replica: End
    entry: SourceEntry
    depends_on: tuple[tuple[str | None, CertName], ...]
    crdb: str | None = None
    crdb_name: str | None = None

    @property
    def label(self) -> str:
        name = f" (CRDB {self.crdb_name})" if self.crdb_name else ""
        return f"{self.replica.label} <- {self.source.label}{name}"

    @property
    def in_sync(self) -> bool:
        return self.entry.status == IN_SYNC

    @property
    def dependency_labels(self) -> list[str]:
        """``cluster/cert`` of each certificate the link depends on (an outsider by its address)."""
        return [f"{cluster or self.source.where}/{cert}" for cluster, cert in self.depends_on]

    def to_dict(self) -> dict[str, object]:
        return {"kind": str(self.kind), "source": self.source.label, "replica": self.replica.label,
                "source_cluster": self.source.cluster, "replica_cluster": self.replica.cluster,
                "replica_db": self.replica.db, "uri": self.entry.uri, "status": self.entry.status,
                "last_error": self.entry.last_error, "crdb_guid": self.crdb, "crdb_name": self.crdb_name,
                "depends_on": self.dependency_labels}


@dataclass(frozen=True)
class Impact:
    """What rotating one certificate of one cluster touches besides the cluster itself."""

    cluster: str
    cert: CertName
    pins: tuple[Link, ...] = ()  # replicas pinning this proxy: re-pin after the push
    trusts: tuple[Link, ...] = ()  # sources trusting this syncer: add the new one before, drop the old after
    crdbs: tuple[CrdbInfo, ...] = ()  # Active-Active databases to force-update after the push
    watch: tuple[Link, ...] = ()  # every link that must be in sync at the end
    unmanaged: tuple[str, ...] = ()  # dependents outside the inventory
    unread: tuple[str, ...] = ()  # inventory clusters whose links could not be read (and why)
    management: tuple[str, ...] = ()  # api: CRDBs whose peers call this API

    @property
    def coupled(self) -> bool:
        return bool(self.pins or self.trusts or self.crdbs or self.unmanaged)

    def dependents(self) -> list[str]:
        """One line per dependent, for `rotation check` and the plan."""
        lines = [f"{link.replica.label} pins its proxy in replica_sources[{link.entry.index}].server_cert"
                 for link in self.pins]
        lines += [f"{link.source.label} trusts its syncer for {link.label}" for link in self.trusts]
        lines += [f"CRDB {crdb.name} ({crdb.guid}): {len(crdb.instances)} instance(s) need a force update"
                  for crdb in self.crdbs]
        lines += [f"{what} (outside the inventory)" for what in self.unmanaged]
        return lines + list(self.management)


@dataclass
class CouplingGraph:
    clusters: dict[str, ClusterLinks]
    links: list[Link] = field(default_factory=list)
    unread: dict[str, str] = field(default_factory=dict)  # inventory cluster -> why it could not be read
    outsiders: dict[str, list[str]] = field(default_factory=dict)  # CRDB guid -> participants outside
    # "cluster dbN" -> how many trusted client certificates are no inventory cluster's syncer: maybe
    # replicas outside the inventory (invisible from here: a link shows on its replica's side only)
    unknown_clients: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, clusters: Sequence[ClusterLinks], unread: dict[str, str] | None = None) -> CouplingGraph:
        graph = cls({c.name: c for c in clusters}, unread=dict(unread or {}))
        syncers = [c.syncer_pem for c in clusters if c.syncer_pem]
        for cluster in clusters:
            for db in cluster.databases:
                unknown = [pem for pem in db.client_certs if not any(anchors([pem], s) for s in syncers)]
                if db.checks_clients and unknown:
                    graph.unknown_clients[f"{cluster.name} db{db.uid}"] = len(unknown)
                graph.links += [graph._replica_of(cluster, db, entry) for entry in db.replica_sources]
                crdb = next((c for c in cluster.crdbs if c.guid == db.crdt_guid), None)
                if crdb is not None:
                    graph.links += [graph._active_active(cluster, db, crdb, e) for e in db.crdt_sources]
                    graph._note_outsiders(crdb)
        return graph

    # -- matching peers ----------------------------------------------------------------------------

    @property
    def _unmatched(self) -> str:
        return "not in the inventory, or a cluster not read" if self.unread else "not in the inventory"

    def _by_host(self, *hosts: str | None) -> ClusterLinks | None:
        """The one cluster a host names: an exact name first, else the longest FQDN it ends with."""
        for host in filter(None, hosts):
            found = [c for c in self.clusters.values() if c.answers_on(host)]
            exact = [c for c in found if c.names_exactly(host)]
            longest = max((len(c.fqdn) for c in found), default=0)
            best = exact or [c for c in found if len(c.fqdn) == longest]
            if len(best) == 1:
                return best[0]
        return None

    def _by_pin(self, pin: str | None) -> ClusterLinks | None:
        found = [c for c in self.clusters.values() if pin and c.proxy_pem
                 and leaf_fingerprint(c.proxy_pem) in fingerprints(pin)]
        return found[0] if len(found) == 1 else None

    def _instance_cluster(self, instance: Instance | None, entry: SourceEntry) -> ClusterLinks | None:
        if instance is None:
            return self._by_host(entry.host, entry.sni)
        return self._by_host(instance.fqdn, instance.url_host, instance.endpoint_host, entry.host)

    def _replica_of(self, replica: ClusterLinks, db: DbLinks, entry: SourceEntry) -> Link:
        source = self._by_host(entry.host, entry.sni) or self._by_pin(entry.server_cert)
        source_db = source.database(port=entry.port) if source is not None else None
        depends: list[tuple[str | None, CertName]] = []
        if entry.server_cert is not None:  # without TLS (encryption off) no certificate is involved
            depends.append((source.name if source else None, CertName.PROXY))
            if not entry.own_client_cert and (source is None or source_db is None or source_db.checks_clients):
                depends.append((replica.name, CertName.SYNCER))
        return Link(LinkKind.REPLICA_OF,
                    End(source.name if source else None, entry.where, source_db.uid if source_db else None,
                        self._unmatched),
                    End(replica.name, f"{replica.fqdn}", db.uid), entry, tuple(depends))

    def _active_active(self, local: ClusterLinks, db: DbLinks, crdb: CrdbInfo, entry: SourceEntry) -> Link:
        instance = next((i for i in crdb.instances if i.id == entry.uid), None)
        peer = self._instance_cluster(instance, entry)
        peer_db = next((d for d in peer.databases if d.crdt_guid == crdb.guid), None) if peer else None
        depends = ((peer.name if peer else None, CertName.PROXY), (local.name, CertName.SYNCER))
        source = End(peer.name if peer else None, entry.where, peer_db.uid if peer_db else None, self._unmatched)
        return Link(LinkKind.ACTIVE_ACTIVE, source, End(local.name, local.fqdn, db.uid), entry, depends,
                    crdb.guid, crdb.name)

    def _note_outsiders(self, crdb: CrdbInfo) -> None:
        outside = [i.fqdn or i.url_host for i in crdb.instances
                   if self._by_host(i.fqdn, i.url_host, i.endpoint_host) is None]
        if outside:
            self.outsiders[crdb.guid] = outside

    # -- what a rotation touches -------------------------------------------------------------------

    def crdbs_of(self, cluster: str) -> list[CrdbInfo]:
        links = self.clusters.get(cluster)
        held = {db.crdt_guid for db in links.databases if db.crdt_guid} if links else set()
        return [c for c in links.crdbs if c.guid in held and c.encryption] if links else []

    def impact(self, cluster: str, cert: CertName) -> Impact:
        unread = tuple(f"{name} ({why})" for name, why in sorted(self.unread.items()))
        if cert is CertName.API:
            management = tuple(f"CRDB {c.name} ({c.guid}): its peers call this API; those that verify it "
                               "(trusted_ca, RS 8.2+) must trust the new certificate's issuer"
                               for c in self.crdbs_of(cluster))
            return Impact(cluster, cert, management=management)
        if cert not in (CertName.PROXY, CertName.SYNCER):
            return Impact(cluster, cert)
        crdbs = tuple(self.crdbs_of(cluster))
        guids = {c.guid for c in crdbs}
        aa = [link for link in self.links if link.crdb in guids and link.source.managed]  # outsiders: not watched
        unmanaged = [f"CRDB {c.name} participant {who}" for c in crdbs for who in self.outsiders.get(c.guid, [])]
        pins: list[Link] = []
        trusts: list[Link] = []
        if cert is CertName.PROXY:
            pins = [link for link in self._replica_links()
                    if link.source.cluster == cluster and (cluster, CertName.PROXY) in link.depends_on]
        else:
            for link in self._replica_links():
                if link.replica.cluster != cluster or (cluster, CertName.SYNCER) not in link.depends_on:
                    continue
                if link.source.managed:
                    trusts.append(link)
                else:
                    unmanaged.append(f"{link.source.label}, source of {link.replica.label}")
        watch = [*pins, *(link for link in trusts if link.source.managed), *aa]
        return Impact(cluster, cert, tuple(pins), tuple(trusts), crdbs, tuple(_unique(watch)),
                      tuple(unmanaged), unread)

    def _replica_links(self) -> Iterable[Link]:
        return (link for link in self.links if link.kind is LinkKind.REPLICA_OF)


def _unique(links: Iterable[Link]) -> list[Link]:
    seen: set[tuple[object, ...]] = set()
    result = []
    for link in links:
        key = (link.kind, link.replica.cluster, link.replica.db, link.entry.uid)
        if key not in seen:
            seen.add(key)
            result.append(link)
    return result


__all__ = ["CouplingGraph", "End", "Impact", "Link", "LinkKind", "anchors"]
