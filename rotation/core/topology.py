"""Which endpoint shows which certificate: pure mapping from REST data to probe targets.

``cm`` on the CM port, ``api`` on the REST port and ``metrics_exporter`` on 8070 of every
active node; ``proxy`` on the port of each TLS database, on the nodes that serve it, with SNI
``redis-<port>.<fqdn>``; ``syncer`` is a client certificate and has no endpoint.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rotation.core.model import CertName, Endpoint

TLS_FIELDS = frozenset({
    "min_control_TLS_version", "min_data_TLS_version", "min_sentinel_TLS_version", "sentinel_tls_mode",
    "sentinel_ssl_policy", "control_cipher_suites", "control_cipher_suites_tls_1_3", "data_cipher_list",
    "data_cipher_suites_tls_1_3", "sentinel_cipher_suites", "sentinel_cipher_suites_tls_1_3",
})


_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def is_host(host: str) -> bool:
    """An IP address, or a DNS name whose every label is 1-63 letters, digits, '_' or inner '-'."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        labels = host.removesuffix(".").split(".")
        return len(host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def not_a_host(host: str, sni: str | None = None) -> str | None:
    """Why an address RS answered (dialled as ``host``, sent as ``sni``) cannot be used, or None: a NUL or an
    empty label raises ValueError deep in the socket and idna layers instead of failing like a dead node."""
    for name in (host, sni or host):
        if not is_host(name):
            return f"{name[:100]!r} is not a host name"
    return None


def _port(value: Any) -> int | None:
    """A port RS answered (``cnm_https_port``), or None when it holds none that can be dialled."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536 else None


@dataclass(frozen=True)
class NodeInfo:
    uid: int
    addr: str
    external_addr: tuple[str, ...]
    status: str
    software_version: str | None


@dataclass(frozen=True)
class DatabaseInfo:
    uid: int
    name: str
    port: int
    tls: bool
    dns_name: str
    addrs: tuple[str, ...]


@dataclass(frozen=True)
class Layout:
    """What the inventory says about a cluster's endpoints (ports left None come from REST data)."""

    fqdn: str
    url: str  # the REST API's URL: its port is the api port unless one is configured or the cluster names one
    cm_port: int | None = None
    api_port: int | None = None
    metrics_port: int = 8070
    discovery_port: int | None = 8001
    node_address: str = "addr"

    @property
    def url_port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0]) if self.url.count(":") >= 2 else 9443


@dataclass(frozen=True)
class ClusterView:
    """One read of the cluster's shape: enough to list every endpoint."""

    name: str
    fqdn: str
    version: str | None
    nodes: tuple[NodeInfo, ...]
    databases: tuple[DatabaseInfo, ...]
    cm_port: int
    api_port: int
    metrics_port: int
    node_address: str = "addr"
    discovery_port: int | None = 8001
    # The TLS policy fields of GET /v1/cluster (rotation.core.tls_rules reads them), unchanged.
    tls_fields: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    syncer_pem: str | None = field(default=None, compare=False, hash=False)
    proxy_pem: str | None = field(default=None, compare=False, hash=False)
    # databases presenting a certificate of their own (RS 8.0.2+): not the cluster's proxy
    own_certificates: frozenset[int] = frozenset()

    @classmethod
    def from_api(
        cls,
        name: str,
        cluster_info: dict[str, Any],
        nodes: Sequence[NodeInfo],
        databases: Sequence[DatabaseInfo],
        version: str | None,
        layout: Layout,
        own_certificates: Sequence[int] = (),
    ) -> ClusterView:
        return cls(
            name=name,
            fqdn=cluster_info.get("name") or layout.fqdn,
            version=version,
            nodes=tuple(nodes),
            databases=tuple(databases),
            cm_port=layout.cm_port or int(cluster_info.get("cm_port") or 8443),
            # every node serves the REST API on cnm_https_port (D-PORTS); `url` may be a load balancer's port
            api_port=layout.api_port or _port(cluster_info.get("cnm_https_port")) or layout.url_port,
            metrics_port=layout.metrics_port,
            node_address=layout.node_address,
            discovery_port=layout.discovery_port,
            tls_fields={k: v for k, v in cluster_info.items() if k in TLS_FIELDS},
            syncer_pem=cluster_info.get("syncer_certificate"),
            proxy_pem=cluster_info.get("proxy_certificate"),
            own_certificates=frozenset(own_certificates),
        )

    def address_of(self, node: NodeInfo) -> str:
        if self.node_address == "external_addr" and node.external_addr:
            return node.external_addr[0]
        return node.addr

    def node_by_address(self, address: str) -> NodeInfo | None:
        return next((n for n in self.nodes if address in (n.addr, *n.external_addr)), None)

    def down_nodes(self) -> list[NodeInfo]:
        return [n for n in self.nodes if n.status != "active"]

    def discovery_endpoints(self) -> list[tuple[str, str, int]]:
        """``(node uid, address, port)`` of the discovery service (Sentinel API) on every node."""
        if not self.discovery_port:
            return []
        return [(str(n.uid), self.address_of(n), self.discovery_port) for n in self.nodes]

    def endpoints(self, cert_name: CertName) -> list[Endpoint]:
        """Every place ``cert_name`` should be presented, down nodes included (they must count)."""
        port = {CertName.CM: self.cm_port, CertName.API: self.api_port,
                CertName.METRICS_EXPORTER: self.metrics_port}.get(cert_name)
        if port is not None:
            return [
                Endpoint(self.name, cert_name, str(n.uid), self.address_of(n), port, self.fqdn)
                for n in self.nodes
            ]
        if cert_name is CertName.PROXY:  # databases with a certificate of their own do not present proxy
            return [e for db in self.databases if db.uid not in self.own_certificates
                    for e in self._database_endpoints(db, cert_name)]
        return []

    def database(self, key: str) -> DatabaseInfo | None:
        """A database by uid (digits) or name, as the inventory names it under ``databases:``."""
        return next((db for db in self.databases if (str(db.uid) == key if key.isdigit() else db.name == key)),
                    None)

    def database_endpoints(self, uid: int, target: str) -> list[Endpoint]:
        """Where database ``uid`` presents its certificate (its own or the cluster's proxy): its port on
        every node it binds, with its SNI; ``target`` names the endpoints (``db:<key>``)."""
        return [e for db in self.databases if db.uid == uid for e in self._database_endpoints(db, target)]

    def _database_endpoints(self, db: DatabaseInfo, cert_name: CertName | str) -> list[Endpoint]:
        if not db.tls:
            return []
        sni = db.dns_name or f"redis-{db.port}.{self.fqdn}"
        result = []
        for address in db.addrs:
            node = self.node_by_address(address)
            label = str(node.uid) if node else address
            result.append(Endpoint(self.name, cert_name, label, address, db.port, sni))
        return result
