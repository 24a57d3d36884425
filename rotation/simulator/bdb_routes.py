"""REST routes of per-database certificates (RS 8.0.2+; 404 before, like any unknown URI).

* ``GET /v1/bdbs/certificates?page&page_size&expires_before&tls_mode``: the databases that have a
  certificate of their own, by uid; ``page`` from 1, ``page_size`` 1-1000 (default 100),
  ``expires_before`` an ISO 8601 time (naive = UTC), ``tls_mode`` enabled|disabled|replica_ssl.
  Answers ``{"certificates": [...], "page", "page_size", "total"}`` (the envelope is invented).
* ``GET /v1/bdbs/{uid}/certificates``: ``{"bdb_uid", "cert", "not_before", "not_after"}``, or 404
  ``certificate_not_found`` while the database presents the cluster ``proxy`` certificate.
* ``POST /v1/bdbs/{uid}/certificates[?dry_run]`` ``{"cert", "private_key"}`` (admin): validated
  like a cluster ``proxy`` upload (parse 400, chain 400, key match 400, expiry 406); ``dry_run``
  answers the same object and changes nothing. The key is never returned.
* ``DELETE /v1/bdbs/{uid}/certificates`` (admin): back to the cluster ``proxy`` certificate.

POST and DELETE take one queued ``fail_next`` failure like a cluster update and answer 409 when a
node bound to the database is down (it catches up when it returns, unless ``--no-resync``); like a PUT, a
DELETE retried after a 409 reaches the nodes that missed it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Any

from .api import BadRequest, _json_body, query_flag, route
from .auth import iso
from .bdb_certs import BDB_CERTS_SINCE
from .http import Request, Response
from .nodes import Database
from .tls import CertProblem, Material, UploadItem, material_from_pems, utcnow, validate_uploads
from .versions import version_tuple

if TYPE_CHECKING:
    from .host import Simulator

TLS_MODES = ("enabled", "disabled", "replica_ssl")


def available(sim: Simulator) -> bool:
    return version_tuple(sim.state.version)[:3] >= BDB_CERTS_SINCE


class DatabaseCertificates:
    """``sim.database_certs``: thread-safe controls and views, for tests and the CLI."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def install(self, bdb_uid: int, cert_pem: str | None = None, key_pem: str | None = None) -> str:
        """Give database ``bdb_uid`` a certificate of its own (default: a new one from the simulator CA)
        without the REST API or its version gate: a state to start from. Returns its fingerprint."""
        sim = self._sim
        db = _database(sim, str(bdb_uid))
        if cert_pem is None or key_pem is None:
            now = utcnow()
            cert_pem, key_pem = sim.ca.issue(sim.config.fqdn, now - dt.timedelta(hours=1), now + sim.config.expires_in)
        material = material_from_pems(f"bdb:{bdb_uid}", cert_pem, key_pem)
        sim._call(lambda: sim.state.bdb_certs.install(db, material))
        return material.fingerprint

    def served_fingerprint(self, uid: int, bdb_uid: int) -> str:
        """What node ``uid``'s endpoint of database ``bdb_uid`` presents on a new handshake."""
        sim = self._sim
        db = _database(sim, str(bdb_uid))

        def served() -> str:
            node = sim.state.node(uid)
            return (sim.state.bdb_certs.served(node, db) or node.served("proxy")).fingerprint

        return sim._call(served)

    def stale(self, uid: int, seconds: float | None = None, bdb_uid: int | None = None) -> None:
        """Node ``uid`` keeps serving the previous per-database certificate (of ``bdb_uid``; None:
        all) for ``seconds`` after a POST/DELETE (None: until cleared; <= 0: switch now)."""
        self._sim._call(lambda: self._sim.state.bdb_certs.stale(uid, seconds, bdb_uid))

    @property
    def requests(self) -> list[tuple[str, int, bool]]:
        """``(method, bdb uid, dry_run)`` of every POST/DELETE on ``/v1/bdbs/{uid}/certificates``."""
        return self._sim._call(lambda: list(self._sim.state.bdb_certs.requests))


def _database(sim: Simulator, uid: str) -> Database:
    found = next((db for db in sim.config.database_list if str(db.uid) == uid), None)
    if found is None:
        raise BadRequest("not_found", f"Database {uid} does not exist", 404)
    return found


def _certificate_json(db: Database, material: Material) -> dict[str, Any]:
    return {"bdb_uid": db.uid, "cert": material.chain_pem, "not_before": iso(material.leaf.not_valid_before_utc),
            "not_after": iso(material.not_after)}


def _own(sim: Simulator, db: Database) -> Material:
    material = sim.state.bdb_certs.installed.get(db.uid)
    if material is None:
        raise BadRequest("certificate_not_found",
                         f"Database {db.uid} has no certificate of its own (it presents the cluster proxy certificate)",
                         404)
    return material


def _int_param(request: Request, name: str, default: int, highest: int) -> int:
    text = request.query.get(name, [str(default)])[-1]
    if not text.isdigit() or not 1 <= int(text) <= highest:
        raise BadRequest("invalid_parameter", f"{name} must be an integer from 1 to {highest}")
    return int(text)


def _time_param(request: Request) -> dt.datetime | None:
    text = request.query.get("expires_before", [""])[-1]
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest("invalid_parameter", "expires_before must be an ISO 8601 time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@route("GET", "/v1/bdbs/certificates", available=available)
async def list_certificates(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    page, page_size = _int_param(request, "page", 1, 1_000_000), _int_param(request, "page_size", 100, 1000)
    expires_before = _time_param(request)
    tls_mode = request.query.get("tls_mode", [None])[-1]
    if tls_mode not in (None, *TLS_MODES):
        raise BadRequest("invalid_parameter", f"tls_mode must be one of {', '.join(TLS_MODES)}")
    items = [
        _certificate_json(db, material)
        for db in sorted(sim.config.database_list, key=lambda d: d.uid)
        if (material := sim.state.bdb_certs.installed.get(db.uid)) is not None
        and tls_mode in (None, "enabled" if db.tls else "disabled")
        and (expires_before is None or material.not_after < expires_before)
    ]
    start = (page - 1) * page_size
    return Response.json({"certificates": items[start:start + page_size], "page": page, "page_size": page_size,
                          "total": len(items)})


@route("GET", "/v1/bdbs/{uid}/certificates", available=available)
async def get_certificate(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    db = _database(sim, params["uid"])
    return Response.json(_certificate_json(db, _own(sim, db)))


@route("POST", "/v1/bdbs/{uid}/certificates", "update", available=available)
async def post_certificate(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    db = _database(sim, params["uid"])
    dry_run = query_flag(request, "dry_run")
    sim.state.bdb_certs.requests.append(("POST", db.uid, dry_run))
    body = _json_body(request)
    if not isinstance(body, dict) or set(body) != {"cert", "private_key"} \
            or not all(isinstance(value, str) for value in body.values()):
        raise BadRequest("invalid_request", "Body must be {\"cert\": PEM, \"private_key\": PEM} and nothing else")
    try:
        [material] = validate_uploads([UploadItem("proxy", body["cert"], body["private_key"])], utcnow())
    except CertProblem as exc:
        description = exc.description.removeprefix("proxy: ")
        raise BadRequest(exc.error_code, f"database {db.uid}: {description}", exc.status) from exc
    material = dataclasses.replace(material, name=f"bdb:{db.uid}")
    if dry_run:
        return Response.json(_certificate_json(db, material))
    status, error = sim.state.bdb_certs.install(db, material)
    return Response.json(error or _certificate_json(db, material), status)


@route("DELETE", "/v1/bdbs/{uid}/certificates", "update", available=available)
async def delete_certificate(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    db = _database(sim, params["uid"])
    sim.state.bdb_certs.requests.append(("DELETE", db.uid, False))
    bdb_certs = sim.state.bdb_certs
    if not any(bdb_certs.served(node, db) for node in sim.state.database_nodes(db)):
        _own(sim, db)  # 404 when it has none anywhere; a DELETE some node missed (409) reaches it when retried
    status, error = sim.state.bdb_certs.install(db, None)
    return Response.json(error, status)
