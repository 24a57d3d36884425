"""REST routes of Active-Active databases (see :mod:`crdb` for what they do).

=======  ===================================  ======================================================
method   path                                 answer
=======  ===================================  ======================================================
GET      /v1/crdbs                            CRDB objects this cluster takes part in
POST     /v1/crdbs                            (admin) create: a CRDB task (``create_crdb``)
GET      /v1/crdbs/{guid}                     the CRDB object; 404 ``crdb_not_found``
POST     /v1/crdbs/{guid}/updates             (admin) modify_request: a CRDB task (``update_crdb``)
GET      /v1/crdbs/{guid}/health_report       the local report: connections and replication links
GET      /v1/crdb_tasks                       tasks coordinated here
GET      /v1/crdb_tasks/{task_id}             one task; 404 ``task_not_found``
PUT      /_sim/crdbs/{guid}                   (admin, control) a participant takes a configuration
=======  ===================================  ======================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .api import BadRequest, _json_body, route
from .crdb_model import CrdbRejected, parse_modify
from .http import Request, Response

if TYPE_CHECKING:
    from .host import Simulator


def _rejected(exc: CrdbRejected) -> BadRequest:
    return BadRequest(exc.error_code, exc.description, status=exc.status)


@route("GET", "/v1/crdbs")
async def get_crdbs(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    return Response.json([crdb.public() for crdb in sim.crdbs.crdbs.values()])


@route("POST", "/v1/crdbs", "update")
async def post_crdbs(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    try:
        return Response.json(sim.crdbs.create(_json_body(request)).public())
    except CrdbRejected as exc:
        raise _rejected(exc) from exc


@route("GET", "/v1/crdbs/{guid}")
async def get_crdb(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    try:
        return Response.json(sim.crdbs.get(params["guid"]).public())
    except CrdbRejected as exc:
        raise _rejected(exc) from exc


@route("POST", "/v1/crdbs/{guid}/updates", "update")
async def post_crdb_updates(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    try:
        force = parse_modify(_json_body(request))
        return Response.json(sim.crdbs.update(params["guid"], force).public())
    except CrdbRejected as exc:
        raise _rejected(exc) from exc


@route("GET", "/v1/crdbs/{guid}/health_report")
async def get_crdb_health(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    try:
        return Response.json(await sim.crdbs.health_report(params["guid"]))
    except CrdbRejected as exc:
        raise _rejected(exc) from exc


@route("GET", "/v1/crdb_tasks")
async def get_crdb_tasks(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    return Response.json([task.public() for task in sim.crdbs.tasks.values()])


@route("GET", "/v1/crdb_tasks/{task_id}")
async def get_crdb_task(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    task = sim.crdbs.tasks.get(params["task_id"])
    if task is None:
        raise BadRequest("task_not_found", f"Task {params['task_id']} does not exist", status=404)
    return Response.json(task.public())


@route("PUT", "/_sim/crdbs/{guid}", "update", control=True)
async def put_sim_crdb(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    config = _json_body(request)
    if not isinstance(config, dict) or config.get("guid") != params["guid"]:
        raise BadRequest("invalid_schema", "Body must be the CRDB configuration of this guid")
    try:
        sim.crdbs.apply(config)
    except CrdbRejected as exc:
        raise _rejected(exc) from exc
    return Response.json({})
