"""REST routes of the replication links: ``GET``/``PUT /v1/bdbs/{uid}`` and ``/_sim/links``.

``GET /v1/bdbs/{uid}`` checks the database's links first (one bounded handshake each, all at
once) and answers the bdb object. ``PUT /v1/bdbs/{uid}`` (admin) validates the body
(:mod:`bdb_config`), applies it, starts a check of the links and answers the updated bdb
object; a queued ``fail_next_db_update`` answers its status instead (409 ``db_busy``, 500
``internal_error``, 503 ``service_unavailable``, else ``injected_failure``) after validation.

``GET /_sim/links`` lists every link of the cluster as last checked; ``POST /_sim/links`` takes
``{"action": "check"}``, ``{"action": "freeze_link", "db": 1, "source": 1, "frozen": true}``,
``{"action": "fail_next_db_update", "count": 1, "status": 409}`` or ``{"action":
"clear_faults"}`` and answers the list (after the check for ``check``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from . import api
from .api import BadRequest, Route
from .bdb_config import BdbRejected, parse_update
from .http import Request, Response

if TYPE_CHECKING:
    from .host import Simulator


def _route(method: str, regex: str, permission: str = "view", control: bool = False) -> Any:
    # digits only, so that /v1/bdbs/certificates and friends stay free for their own routes
    def register(handler: api.RouteHandler) -> api.RouteHandler:
        api.ROUTES.append(Route(method, re.compile(regex), handler, permission, control=control))
        return handler

    return register


def _database(sim: Simulator, params: dict[str, str]) -> Any:
    uid = int(params["uid"])
    db = next((d for d in sim.config.database_list if d.uid == uid), None)
    if db is None:
        raise BadRequest("not_found", f"Database {uid} does not exist", status=404)
    return db


@_route("GET", r"^/v1/bdbs/(?P<uid>\d+)/?$")
async def get_bdb(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    db = _database(sim, params)
    await sim.replication.refresh([db.uid])
    return Response.json(api.bdb_json(sim, db))


@_route("PUT", r"^/v1/bdbs/(?P<uid>\d+)/?$", "update")
async def put_bdb(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    db = _database(sim, params)
    try:
        changes = parse_update(api._json_body(request), db.name, db.tls)
    except BdbRejected as exc:
        raise BadRequest(exc.error_code, exc.description) from exc
    injected = sim.replication.take_injected_failure()
    if injected is not None:
        return Response.error(*injected)
    sim.replication.apply(db.uid, changes)
    return Response.json(api.bdb_json(sim, db))


@_route("GET", r"^/_sim/links/?$", "update", control=True)
async def get_links(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    return Response.json(sim.replication.snapshot())


@_route("POST", r"^/_sim/links/?$", "update", control=True)
async def post_links(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    body = api._json_body(request)
    action = body.get("action") if isinstance(body, dict) else None
    replication = sim.replication
    try:
        if action == "check":
            await replication.refresh()
        elif action == "freeze_link":
            replication.freeze(int(body["db"]), None if body.get("source") is None else int(body["source"]),
                               bool(body.get("frozen", True)))
        elif action == "fail_next_db_update":
            count, status = int(body.get("count", 1)), int(body.get("status", 409))
            if count < 0 or not 400 <= status <= 599:
                raise ValueError("needs count >= 0 and a 4xx/5xx status")
            replication.fail_queue.extend([status] * count)
        elif action == "clear_faults":
            replication.clear()
        else:
            raise ValueError("action must be check, freeze_link, fail_next_db_update or clear_faults")
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRequest("invalid_fault", f"{action}: {exc}") from exc
    return Response.json(replication.snapshot())
