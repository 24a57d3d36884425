"""Active-Active (CRDB) objects of the simulator: participants, a CRDB, its tasks, and the
checks of ``POST /v1/crdbs`` and ``POST /v1/crdbs/{guid}/updates`` bodies.

Shapes follow the REST reference: the CRDB object (``guid``, ``name``, ``encryption``,
``instances[]`` of ``instance_info`` with a ``cluster_info``, ``default_db_config``,
``local_databases``), the CRDB task object (``id``, ``crdb_guid``, ``operation``, ``status``
``queued|started|finished|failed``, ``errors[{cluster_name, error_code, description}]``,
``progress``) and the modify request (``force_update``, ``crdb``). Credentials are accepted,
kept in memory and never returned. Error codes (400 unless said): ``invalid_schema``,
``unsupported``, ``invalid_value``, ``not_participant``, ``no_such_database``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .bdb_config import certificate_pem
from .peers import Peer


class CrdbRejected(Exception):
    def __init__(self, error_code: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error_code, self.description, self.status = error_code, description, status


@dataclass
class Participant:
    """One instance of a CRDB and how to reach its cluster (REST and replication endpoint)."""

    id: int
    name: str  # the cluster FQDN
    url: str
    username: str
    password: str  # never shown
    replication_endpoint: str  # host:port of the instance's database endpoint
    replication_tls_sni: str
    compression: int = 3
    trusted_ca: str | None = None

    @property
    def peer(self) -> Peer:
        return Peer(self.url, self.username, self.password, self.trusted_ca)

    def public(self, db_uid: str = "") -> dict[str, Any]:
        return {"id": self.id, "compression": self.compression, "db_uid": db_uid,
                "cluster": {"name": self.name, "url": self.url, "replication_endpoint": self.replication_endpoint,
                            "replication_tls_sni": self.replication_tls_sni}}

    def internal(self) -> dict[str, Any]:
        """For other participants (over TLS, so that any of them can coordinate an update)."""
        body = self.public()
        body["cluster"]["credentials"] = {"username": self.username, "password": self.password}
        if self.trusted_ca is not None:
            body["cluster"]["trusted_ca"] = self.trusted_ca
        return body


@dataclass
class Crdb:
    guid: str
    name: str
    port: int
    participants: list[Participant]
    config_version: int = 0
    local_id: int = 0
    local_db_uid: int = 0

    def public(self) -> dict[str, Any]:
        return {
            "guid": self.guid, "name": self.name, "encryption": True, "causal_consistency": False,
            "featureset_version": 5, "protocol_version": 1, "modules": [], "managed_by": "",
            "default_db_config": {"port": self.port, "tls_mode": "enabled"},
            "instances": [p.public(str(self.local_db_uid) if p.id == self.local_id else "")
                          for p in self.participants],
            "local_databases": [{"bdb_uid": str(self.local_db_uid), "id": self.local_id}],
        }


@dataclass
class CrdbTask:
    id: str
    crdb_guid: str
    operation: str
    status: str = "queued"
    started: str | None = None
    ended: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
    progress: dict[str, str] = field(default_factory=dict)  # cluster name -> step
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "crdb_guid": self.crdb_guid, "operation": self.operation, "status": self.status,
                "started": self.started, "ended": self.ended, "errors": list(self.errors),
                "progress": {"clusters": [{"name": n, "progress": p} for n, p in self.progress.items()],
                             "worker": self.status},
                "worker_name": "crdb_worker"}


def _require(obj: dict[str, Any], name: str, kind: type, where: str) -> Any:
    """``obj[name]``, a non-empty value of ``kind`` (a bool is not an int here)."""
    value = obj.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool) or value == "":
        raise CrdbRejected("invalid_schema", f"{where}{name}: required {kind.__name__}")
    return value


def parse_participant(item: Any, index: int, port: int) -> Participant:
    where = f"instances[{index}]."
    if not isinstance(item, dict) or set(item) - {"cluster", "compression", "db_config", "id", "db_uid"}:
        raise CrdbRejected("invalid_schema", f"instances[{index}]: an instance_info object with a cluster")
    cluster = _require(item, "cluster", dict, where)
    where += "cluster."
    unknown = set(cluster) - {"name", "url", "credentials", "replication_endpoint", "replication_tls_sni",
                              "trusted_ca"}
    if unknown:
        raise CrdbRejected("invalid_schema", f"{where[:-1]}: unknown properties {sorted(unknown)}")
    name, url = _require(cluster, "name", str, where), _require(cluster, "url", str, where)
    split = urlsplit(url)
    if split.scheme != "https" or not split.hostname:
        raise CrdbRejected("invalid_value", f"{where}url: must be an https:// URL")
    credentials = _require(cluster, "credentials", dict, where)
    username = _require(credentials, "username", str, where + "credentials.")
    password = _require(credentials, "password", str, where + "credentials.")
    endpoint = cluster.get("replication_endpoint") or f"{split.hostname}:{port}"
    host, _, endpoint_port = str(endpoint).rpartition(":")
    if not host or not endpoint_port.isdigit():
        raise CrdbRejected("invalid_value", f"{where}replication_endpoint: must be host:port")
    trusted_ca = cluster.get("trusted_ca")
    compression = item.get("compression", 3)
    if not isinstance(compression, int) or isinstance(compression, bool) or not 0 <= compression <= 6:
        raise CrdbRejected("invalid_value", f"{where[:-8]}compression: must be an integer 0-6")
    return Participant(
        id=index + 1, name=name, url=url, username=username, password=password, replication_endpoint=str(endpoint),
        replication_tls_sni=str(cluster.get("replication_tls_sni") or f"redis-{port}.{name}"),
        compression=compression,
        trusted_ca=None if trusted_ca is None else certificate_pem(trusted_ca, where + "trusted_ca"),
    )


def parse_create(body: Any) -> tuple[str, int, list[Participant]]:
    """(name, port, participants) of a ``POST /v1/crdbs`` body."""
    if not isinstance(body, dict):
        raise CrdbRejected("invalid_schema", "Body must be a CRDB object")
    unknown = set(body) - {"name", "encryption", "default_db_config", "instances", "causal_consistency",
                           "featureset_version", "protocol_version"}
    if unknown:
        raise CrdbRejected("unsupported", f"{sorted(unknown)}: not modelled by the simulator")
    name = _require(body, "name", str, "")
    if body.get("encryption") is not True:
        raise CrdbRejected("unsupported", "encryption: the simulator models encrypted Active-Active only; "
                                          "set it to true")
    config = _require(body, "default_db_config", dict, "")
    port = _require(config, "port", int, "default_db_config.")
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) < 2:
        raise CrdbRejected("invalid_schema", "instances: at least two participating clusters")
    participants = [parse_participant(item, index, port) for index, item in enumerate(instances)]
    names = [p.name for p in participants]
    if len(set(names)) != len(names):
        raise CrdbRejected("invalid_value", f"instances: a cluster takes part once, got {names}")
    return name, port, participants


def parse_modify(body: Any) -> bool:
    """A ``modify_request``: returns ``force_update``; instance changes and config are refused."""
    if not isinstance(body, dict):
        raise CrdbRejected("invalid_schema", "Body must be a CRDB modify_request object")
    for name in ("add_instances", "remove_instances"):
        if body.get(name):
            raise CrdbRejected("unsupported", f"{name}: the simulator does not add or remove instances")
    unknown = set(body) - {"force_update", "crdb", "add_instances", "remove_instances"}
    if unknown:
        raise CrdbRejected("invalid_schema", f"unknown properties {sorted(unknown)}")
    crdb = body.get("crdb", {})
    if not isinstance(crdb, dict) or set(crdb) - {"guid", "name"}:
        raise CrdbRejected("unsupported", "crdb: the simulator models no configuration fields "
                                          "(force_update alone refreshes the participants)")
    force = body.get("force_update", False)
    if not isinstance(force, bool):
        raise CrdbRejected("invalid_schema", "force_update: must be a boolean")
    return force
