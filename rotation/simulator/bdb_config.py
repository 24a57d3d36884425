"""``PUT /v1/bdbs/{uid}``: the replication fields the simulator lets you write, checked first.

Writable: ``replica_sources`` (``syncer_sources`` objects: ``uri``, ``server_cert``,
``client_cert`` + ``client_key``, ``replication_tls_sni``, ``compression``, ``encryption``; the
read-only status fields a GET returns are accepted and ignored, so a GET-modify-PUT works),
``replica_sync``, ``authentication_ssl_client_certs`` (``[{"client_cert": PEM}]``) and
``enforce_client_authentication``. Anything else is refused: the CRDT fields belong to the
Active-Active coordinator, other bdb fields are not modelled. Every problem names its field
(``replica_sources[0].server_cert: ...``). Error codes (400): ``invalid_json``,
``invalid_schema``, ``unsupported_field``, ``crdt_managed``, ``invalid_certificate``,
``key_mismatch``, ``invalid_uri``, ``invalid_value``, ``tls_required``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .links import SyncSource
from .tls import _spki

SOURCE_FIELDS = frozenset({"uri", "server_cert", "client_cert", "client_key", "replication_tls_sni",
                           "compression", "encryption"})
READ_ONLY_SOURCE_FIELDS = frozenset({"uid", "status", "lag", "last_error", "last_update", "rdb_size",
                                     "rdb_transferred"})
SYNC_VALUES = ("enabled", "disabled", "paused")
CRDT_FIELDS = frozenset({"crdt_sources", "authentication_ssl_crdt_certs", "crdt_sync", "crdt_guid",
                         "crdt_replica_id", "crdt"})
WRITABLE = frozenset({"replica_sources", "replica_sync", "authentication_ssl_client_certs",
                      "enforce_client_authentication"})


class BdbRejected(Exception):
    def __init__(self, error_code: str, description: str) -> None:
        super().__init__(description)
        self.error_code, self.description = error_code, description


@dataclass(frozen=True)
class BdbChanges:
    """What a valid request changes; None = field absent, keep the current value."""

    replica_sources: list[SyncSource] | None = None
    replica_sync: str | None = None
    client_certs: list[str] | None = None
    enforce_client_authentication: str | None = None


def parse_update(body: Any, db_name: str, tls: bool) -> BdbChanges:
    if not isinstance(body, dict) or not body:
        raise BdbRejected("invalid_schema", "Body must be a non-empty JSON object of bdb fields")
    for name in body:
        if name in CRDT_FIELDS:
            raise BdbRejected("crdt_managed", f"{name}: managed by the Active-Active coordinator; "
                                              "use POST /v1/crdbs/{guid}/updates")
        if name not in WRITABLE:
            raise BdbRejected("unsupported_field", f"{name}: not a field the simulator lets you write "
                                                   f"(writable: {sorted(WRITABLE)})")
    certs = body.get("authentication_ssl_client_certs")
    if certs is not None and certs and not tls:
        raise BdbRejected("tls_required", f"authentication_ssl_client_certs: database {db_name} has TLS disabled")
    return BdbChanges(
        replica_sources=_sources(body["replica_sources"]) if "replica_sources" in body else None,
        replica_sync=_choice(body, "replica_sync", SYNC_VALUES),
        client_certs=None if certs is None else _client_certs(certs),
        enforce_client_authentication=_choice(body, "enforce_client_authentication", ("enabled", "disabled")),
    )


def _choice(body: dict[str, Any], name: str, values: tuple[str, ...]) -> str | None:
    value = body.get(name)
    if value is not None and value not in values:
        raise BdbRejected("invalid_value", f"{name}: must be one of {list(values)}, not {value!r}")
    return value


def _client_certs(items: Any) -> list[str]:
    if not isinstance(items, list):
        raise BdbRejected("invalid_schema", "authentication_ssl_client_certs: must be a list of {\"client_cert\": PEM}")
    pems = []
    for index, item in enumerate(items):
        where = f"authentication_ssl_client_certs[{index}]"
        if not isinstance(item, dict) or set(item) != {"client_cert"}:
            raise BdbRejected("invalid_schema", f"{where}: must be {{\"client_cert\": PEM}} and nothing else")
        pems.append(certificate_pem(item["client_cert"], f"{where}.client_cert"))
    return pems


def certificate_pem(value: Any, where: str) -> str:
    """A PEM holding at least one certificate, returned as given."""
    if not isinstance(value, str):
        raise BdbRejected("invalid_schema", f"{where}: must be a PEM string")
    try:
        x509.load_pem_x509_certificates(value.encode())
    except ValueError as exc:
        raise BdbRejected("invalid_certificate", f"{where}: the certificate PEM cannot be parsed") from exc
    return value


def _sources(items: Any) -> list[SyncSource]:
    if not isinstance(items, list):
        raise BdbRejected("invalid_schema", "replica_sources: must be a list of syncer_sources objects")
    return [_source(item, f"replica_sources[{index}]", index + 1) for index, item in enumerate(items)]


def _source(item: Any, where: str, uid: int) -> SyncSource:
    if not isinstance(item, dict):
        raise BdbRejected("invalid_schema", f"{where}: must be an object")
    unknown = set(item) - SOURCE_FIELDS - READ_ONLY_SOURCE_FIELDS
    if unknown:
        raise BdbRejected("invalid_schema", f"{where}: unknown properties {sorted(unknown)}")
    uri = item.get("uri")
    split = urlsplit(uri) if isinstance(uri, str) else None
    try:
        valid = split is not None and split.scheme in ("redis", "rediss") and bool(split.hostname) and bool(split.port)
    except ValueError:
        valid = False
    if not valid:
        raise BdbRejected("invalid_uri", f"{where}.uri: must be redis://host:port, not {uri!r}")
    encryption = item.get("encryption", True)
    if not isinstance(encryption, bool):
        raise BdbRejected("invalid_schema", f"{where}.encryption: must be a boolean")
    server_cert = item.get("server_cert")
    server_cert = certificate_pem(server_cert, f"{where}.server_cert") if server_cert is not None else None
    if encryption and server_cert is None:
        raise BdbRejected("invalid_schema", f"{where}.server_cert: required when encryption is on")
    client_cert, client_key = _client_pair(item, where)
    sni, compression = item.get("replication_tls_sni"), item.get("compression", 0)
    if sni is not None and (not isinstance(sni, str) or not sni):
        raise BdbRejected("invalid_schema", f"{where}.replication_tls_sni: must be a non-empty string")
    if not isinstance(compression, int) or isinstance(compression, bool) or not 0 <= compression <= 6:
        raise BdbRejected("invalid_value", f"{where}.compression: must be an integer 0-6")
    return SyncSource(uid=uid, uri=str(uri), server_cert=server_cert if encryption else None,
                      client_cert=client_cert, client_key=client_key, replication_tls_sni=sni,
                      compression=compression)


def _client_pair(item: dict[str, Any], where: str) -> tuple[str | None, str | None]:
    cert, key = item.get("client_cert"), item.get("client_key")
    if (cert is None) != (key is None):
        raise BdbRejected("invalid_schema", f"{where}: client_cert and client_key go together")
    if cert is None:
        return None, None
    cert = certificate_pem(cert, f"{where}.client_cert")
    if not isinstance(key, str):
        raise BdbRejected("invalid_schema", f"{where}.client_key: must be a PEM string")
    try:
        private = serialization.load_pem_private_key(key.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise BdbRejected("invalid_certificate", f"{where}.client_key: the private key PEM cannot be parsed") from exc
    leaf = x509.load_pem_x509_certificates(cert.encode())[0]
    if _spki(private.public_key()) != _spki(leaf.public_key()):
        raise BdbRejected("key_mismatch", f"{where}.client_key: does not match client_cert")
    return cert, key
