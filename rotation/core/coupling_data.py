"""What one cluster's REST API says about its replication, parsed into values (pure).

From ``GET /v1/cluster`` (``name``, ``proxy_certificate``, ``syncer_certificate``), ``GET /v1/nodes``,
``GET /v1/bdbs`` (``replica_sources[]``, ``crdt_sources[]``, ``authentication_ssl_client_certs``,
``enforce_client_authentication``, ``crdt_guid``, the endpoints) and ``GET /v1/crdbs``
(``instances[].cluster``, ``local_databases``). Answers come from outside: a field of the wrong
type is skipped, never trusted and never a crash. :mod:`rotation.core.coupling` builds the graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rotation.core import certs
from rotation.core.errors import CertificateError
from rotation.core.redaction import redact_text, redact_url

IN_SYNC = "in-sync"


@dataclass(frozen=True)
class SourceEntry:
    """One ``syncer_sources`` object: a ``replica_sources[]`` or ``crdt_sources[]`` entry."""

    uid: int
    index: int  # its position in the list (what a PUT rewrites)
    uri: str
    host: str
    port: int | None
    server_cert: str | None
    own_client_cert: bool  # the entry presents its own client_cert instead of the cluster's syncer
    sni: str | None
    status: str
    last_error: str

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host


@dataclass(frozen=True)
class DbLinks:
    """The replication fields of one database."""

    uid: int
    name: str
    port: int | None
    client_certs: tuple[str, ...]  # authentication_ssl_client_certs[].client_cert
    enforce_client_auth: bool
    replica_sources: tuple[SourceEntry, ...]
    crdt_guid: str | None
    crdt_replica_id: int | None
    crdt_sources: tuple[SourceEntry, ...]

    @property
    def checks_clients(self) -> bool:
        """The database asks replicas for a certificate it must trust."""
        return self.enforce_client_auth and bool(self.client_certs)


@dataclass(frozen=True)
class Instance:
    """One participant of an Active-Active database, as ``instances[].cluster`` names it."""

    id: int
    fqdn: str
    url_host: str
    endpoint_host: str


@dataclass(frozen=True)
class CrdbInfo:
    guid: str
    name: str
    instances: tuple[Instance, ...]
    encryption: bool = True  # without TLS between instances no certificate is involved


@dataclass(frozen=True)
class ClusterLinks:
    """One inventory cluster's replication, and what identifies it to its peers."""

    name: str  # the inventory's name
    fqdn: str
    names: frozenset[str]  # addresses and DNS names its endpoints answer on (lower case)
    proxy_pem: str | None
    syncer_pem: str | None
    databases: tuple[DbLinks, ...]
    crdbs: tuple[CrdbInfo, ...]

    def database(self, uid: int | None = None, port: int | None = None) -> DbLinks | None:
        return next((d for d in self.databases if (uid is None or d.uid == uid) and (port is None or d.port == port)),
                    None)

    def names_exactly(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return host in self.names or host == self.fqdn

    def answers_on(self, host: str) -> bool:
        """``host`` is one of its addresses or names, or a name under its FQDN (``redis-12000.<fqdn>``)."""
        return self.names_exactly(host) or host.lower().rstrip(".").endswith("." + self.fqdn)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def host_port(text: str) -> tuple[str, int | None]:
    """``redis://host:port``, ``https://host:port`` or ``host:port`` -> (lower-case host, port)."""
    try:
        split = urlsplit(text if "//" in text else f"//{text}")
        return (split.hostname or "").lower(), split.port
    except ValueError:
        return "", None


def shown_uri(uri: str) -> str:
    """A source URI as the tool keeps and shows it: RS's holds the source database's password
    (``redis://admin:<password>@host:port``), which never goes into a record, an output or a log. Entries
    read from RS are matched through this form too."""
    return redact_url(uri)


def _source(item: dict[str, Any], index: int) -> SourceEntry:
    uri = _text(item.get("uri"))
    host, port = host_port(uri)
    server_cert = item.get("server_cert")
    return SourceEntry(uid=_int(item.get("uid")) or index + 1, index=index, uri=shown_uri(uri), host=host, port=port,
                       server_cert=server_cert if isinstance(server_cert, str) and server_cert else None,
                       own_client_cert=bool(_text(item.get("client_cert"))),
                       sni=_text(item.get("replication_tls_sni")) or None,
                       status=_text(item.get("status")) or "unknown",
                       last_error=redact_text(_text(item.get("last_error"))))


def parse_database(bdb: dict[str, Any]) -> DbLinks | None:
    uid = _int(bdb.get("uid"))
    if uid is None:
        return None
    listed = tuple(_text(entry.get("client_cert")) for entry in _dicts(bdb.get("authentication_ssl_client_certs")))
    return DbLinks(
        uid=uid, name=_text(bdb.get("name")) or str(uid), port=_int(bdb.get("port")),
        client_certs=tuple(pem for pem in listed if pem),
        enforce_client_auth=bdb.get("enforce_client_authentication", "enabled") != "disabled",
        replica_sources=tuple(_source(item, i) for i, item in enumerate(_dicts(bdb.get("replica_sources")))),
        crdt_guid=_text(bdb.get("crdt_guid")) or None, crdt_replica_id=_int(bdb.get("crdt_replica_id")),
        crdt_sources=tuple(_source(item, i) for i, item in enumerate(_dicts(bdb.get("crdt_sources")))),
    )


def _endpoint_names(bdb: dict[str, Any]) -> Iterable[str]:
    for endpoint in _dicts(bdb.get("endpoints")):
        yield _text(endpoint.get("dns_name"))
        addrs = endpoint.get("addr")
        yield from (a for a in addrs if isinstance(a, str)) if isinstance(addrs, list) else ()


def parse_crdb(crdb: dict[str, Any]) -> CrdbInfo | None:
    guid = _text(crdb.get("guid"))
    if not guid:
        return None
    instances = []
    for item in _dicts(crdb.get("instances")):
        cluster: dict[str, Any] = item["cluster"] if isinstance(item.get("cluster"), dict) else {}
        instance_id = _int(item.get("id"))
        if instance_id is None:
            continue
        instances.append(Instance(id=instance_id, fqdn=_text(cluster.get("name")).lower(),
                                  url_host=host_port(_text(cluster.get("url")))[0],
                                  endpoint_host=host_port(_text(cluster.get("replication_endpoint")))[0]))
    return CrdbInfo(guid=guid, name=_text(crdb.get("name")) or guid, instances=tuple(instances),
                    encryption=crdb.get("encryption") is not False)


def parse_cluster(name: str, fqdn: str, url: str, cluster_info: dict[str, Any], node_addresses: Sequence[str],
                  bdbs: Sequence[Any], crdbs: Sequence[Any]) -> ClusterLinks:
    """``fqdn`` and ``url`` are the inventory's; the cluster's own name counts too."""
    names = {a.lower() for a in node_addresses if a} | {host_port(url)[0], fqdn.lower()}
    own = _text(cluster_info.get("name")).lower()
    if own:
        names.add(own)
    raw = [bdb for bdb in bdbs if isinstance(bdb, dict)]
    for bdb in raw:
        names.update(n.lower() for n in _endpoint_names(bdb) if n)
    return ClusterLinks(
        name=name, fqdn=fqdn.lower(), names=frozenset(names - {""}),
        proxy_pem=_text(cluster_info.get("proxy_certificate")) or None,
        syncer_pem=_text(cluster_info.get("syncer_certificate")) or None,
        databases=tuple(db for db in map(parse_database, raw) if db is not None),
        crdbs=tuple(c for c in (parse_crdb(item) for item in crdbs if isinstance(item, dict)) if c is not None),
    )


# -- certificates as trust anchors ---------------------------------------------------------------


def _certificates(pem: str | None) -> list[Any]:
    if not pem:
        return []
    try:
        return certs.load_certificates(pem, where="a replication certificate")
    except CertificateError:
        return []


def anchors(anchor_pems: Sequence[str | None], chain_pem: str | None) -> bool:
    """Whether a peer that trusts ``anchor_pems`` (each a pin or a CA, partial chain as RS and the
    simulator use them) accepts ``chain_pem``: a certificate of the chain is an anchor, or was
    issued by one."""
    chain = _certificates(chain_pem)
    trusted = [c for pem in anchor_pems for c in _certificates(pem)]
    if not chain or not trusted:
        return False
    pinned = {certs.fingerprint(c) for c in trusted}
    if any(certs.fingerprint(c) in pinned for c in chain):
        return True
    return any(certs.issued_by(c, anchor) for c in chain for anchor in trusted)


def fingerprints(pem: str | None) -> set[str]:
    return {certs.fingerprint(c) for c in _certificates(pem)}


def leaf_fingerprint(pem: str | None) -> str | None:
    found = _certificates(pem)
    return certs.fingerprint(found[0]) if found else None


def same_shape(old_pin: str | None, new_chain: str) -> str:
    """What to write where ``old_pin`` was: the new leaf for a pinned leaf, the new chain for a chain."""
    found = _certificates(new_chain)
    if len(_certificates(old_pin)) > 1 or not found:
        return new_chain
    return certs.cert_to_pem(found[0])


__all__ = ["IN_SYNC", "ClusterLinks", "CrdbInfo", "DbLinks", "Instance", "SourceEntry", "anchors", "fingerprints",
           "host_port", "leaf_fingerprint", "parse_cluster", "parse_crdb", "parse_database", "same_shape"]
