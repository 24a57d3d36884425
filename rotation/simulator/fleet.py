"""Several simulated clusters linked by real replication, for tests and demos.

::

    from rotation.simulator.fleet import Fleet

    with Fleet(["east", "west", "north"], state_dir=tmp, first_addresses=[...]) as fleet:
        fleet.replica_of("east", "west")          # west db1 replicates east db1
        guid = fleet.crdb()                        # Active-Active on port 12010, every cluster
        fleet.check_links()                        # {cluster: [link rows]}
        fleet.cluster_down("north")                # a peer unreachable: all its listeners closed

Each cluster is a :class:`ClusterSimulator` named ``<name>.sim.local`` on its own 127.x base
with the real RS ports, and by default two TLS databases: ``db1`` (12000, for Replica Of) and
``aa`` (12010, the Active-Active instance). Links are set up through the same code as the REST
API (``PUT /v1/bdbs/{uid}``, ``POST /v1/crdbs``); the CRDB coordinator reaches its peers over
HTTPS with their admin credentials.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from .cluster import SimulatorConfig
from .nodes import Database
from .server import ClusterSimulator, SimulatorError
from .versions import DEFAULT_VERSION

FLEET_DATABASES: tuple[Database, ...] = (
    Database(1, "db1", 12000, True, "all-nodes"),  # Replica Of: source on one cluster, replica on another
    Database(2, "aa", 12010, True, "all-nodes"),  # the Active-Active instance
)
REPLICA_DB, CRDB_PORT = 1, 12010


class FleetError(SimulatorError):
    """A link or CRDB of the fleet could not be set up."""


class Fleet:
    def __init__(
        self,
        names: Sequence[str] = ("east", "west"),
        *,
        state_dir: Path,
        first_addresses: Sequence[str] | None = None,
        nodes: int = 1,
        databases: Sequence[Database] = FLEET_DATABASES,
        expires_in: dt.timedelta = dt.timedelta(days=365),
        version: str = DEFAULT_VERSION,
        sync_interval: float = 2.0,
        verify_peer_api: bool = False,
        connect_delay: float = 0.0,
        connect_hook: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        """``connect_delay``: seconds every accepted connection waits before its handshake (a round trip);
        ``connect_hook(cluster, listener)``: awaited there too (tests count handshakes in flight)."""
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"cluster names must be distinct and not empty: {list(names)}")
        addresses = list(first_addresses or [str(ipaddress.IPv4Address("127.0.20.1") + 256 * i)
                                             for i in range(len(names))])
        if len(addresses) != len(names):
            raise ValueError("one first address per cluster")
        self.verify_peer_api = verify_peer_api
        self.clusters: dict[str, ClusterSimulator] = {}
        for name, first in zip(names, addresses, strict=True):
            sim = ClusterSimulator(SimulatorConfig(
                fqdn=f"{name}.sim.local", nodes=nodes, first_address=first, databases=list(databases),
                expires_in=expires_in, version=version, state_dir=Path(state_dir) / name,
                connect_delay=connect_delay, connect_hook=partial(connect_hook, name) if connect_hook else None))
            sim.replication.interval = sync_interval
            self.clusters[name] = sim

    def __getitem__(self, name: str) -> ClusterSimulator:
        try:
            return self.clusters[name]
        except KeyError:
            raise KeyError(f"no cluster {name!r} in the fleet ({sorted(self.clusters)})") from None

    def start(self) -> Fleet:
        started = []
        try:
            for sim in self.clusters.values():
                started.append(sim.start())
        except BaseException:
            for sim in started:
                sim.stop()
            raise
        return self

    def stop(self) -> None:
        for sim in self.clusters.values():
            sim.stop()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- links -------------------------------------------------------------------------------------

    def endpoint(self, name: str, db_uid: int = REPLICA_DB) -> tuple[str, int, str]:
        """(address of node 1, port, SNI name) of a database endpoint."""
        sim = self[name]
        db = next(d for d in sim.config.database_list if d.uid == db_uid)
        return sim.node_addresses[0], db.port, f"redis-{db.port}.{sim.config.fqdn}"

    def replica_of(self, source: str, replica: str, db_uid: int = REPLICA_DB, *, trust_syncer: bool = True) -> None:
        """``replica``'s database ``db_uid`` replicates ``source``'s: its ``replica_sources`` pins the
        source's current proxy certificate; with ``trust_syncer`` the source's
        ``authentication_ssl_client_certs`` gains the replica cluster's syncer certificate."""
        src, rep = self[source], self[replica]
        if trust_syncer:
            listed = src._call(lambda: list(src.replication.db(db_uid).client_certs))
            syncer = rep.cluster_cert_pem("syncer")
            pems = listed if syncer in listed else [*listed, syncer]
            src.replication.configure(db_uid, {"authentication_ssl_client_certs": [{"client_cert": p} for p in pems]})
        addr, port, sni = self.endpoint(source, db_uid)
        rep.replication.configure(db_uid, {"replica_sources": [{
            "uri": f"redis://{addr}:{port}", "server_cert": src.cluster_cert_pem("proxy"),
            "replication_tls_sni": sni}]})

    def crdb(self, names: Sequence[str] | None = None, *, name: str = "aa", port: int = CRDB_PORT,
             coordinator: str | None = None) -> str:
        """Create an Active-Active database on ``names`` (default: all); returns its guid."""
        names = list(names or self.clusters)
        instances = []
        for member in names:
            sim = self[member]
            cluster: dict[str, Any] = {
                "name": sim.config.fqdn, "url": f"https://{sim.node_addresses[0]}:{sim.config.api_port}",
                "credentials": {"username": sim.admin_username, "password": sim.admin_password},
                "replication_endpoint": f"{sim.node_addresses[0]}:{port}"}
            if self.verify_peer_api:
                cluster["trusted_ca"] = sim.ca_pem
            instances.append({"cluster": cluster})
        body = {"name": name, "encryption": True, "default_db_config": {"port": port}, "instances": instances}
        task = self[coordinator or names[0]].crdbs.create_crdb(body)
        if task["status"] != "finished":
            raise FleetError(f"CRDB {name} not created: {task['errors']}")
        return str(task["crdb_guid"])

    def check_links(self) -> dict[str, list[dict[str, Any]]]:
        """Every cluster checks all its links now; their rows per cluster."""
        return {name: sim.replication.check_now() for name, sim in self.clusters.items()}

    def in_sync(self) -> bool:
        return all(row["status"] == "in-sync" for rows in self.check_links().values() for row in rows)

    def cluster_down(self, name: str, down: bool = True) -> None:
        """Close (or re-open) every listener of the cluster: REST API and database endpoints."""
        sim = self[name]
        for uid in range(1, sim.config.nodes + 1):
            sim.node_down(uid, down)

    def inventory(self) -> dict[str, dict[str, Any]]:
        """The clusters as entries of the project's inventory (``clusters:``)."""
        return {name: sim.inventory_entry(name) for name, sim in self.clusters.items()}
