"""The REST API every simulated node answers on its ``api`` listener.

Routes are data (:data:`ROUTES`); add one with :func:`route`. Every route needs a login (HTTP
Basic, a client certificate or a JWT: :mod:`rotation.simulator.auth`); ``update`` routes need the
admin role. ``/_sim/*`` are the simulator's own control routes. More routes register from
:mod:`rotation.simulator.users` (users, JWTs, ``/_sim/rladmin``) and
:mod:`rotation.simulator.bdb_routes` (per-database certificates).

Error bodies are ``{"error_code": ..., "description": ...}``. The codes are invented (RS's
real strings are not public):

==================  ======  ==========================================================
error_code          status  when
==================  ======  ==========================================================
unauthorized        401     no login: missing/wrong Basic credentials, Basic turned off
                            (``control_plane_basic_authentication``), a client certificate
                            no certificate user matches or outside ``mtls_authorized_subjects``,
                            an invalid or expired JWT (the description says which)
insufficient_perm…  403     ``insufficient_permissions``: the viewer on an update route
not_found           404     unknown URI, unknown node uid, bulk PUT on a pre-7.22.2 profile
method_not_allowed  405     known URI, other method
bad_content_type    400     PUT/POST without ``Content-Type: application/json``
invalid_json        400     body is not JSON
invalid_request     400     wrong shape: missing/unknown properties, wrong types
unknown_certificate 403     certificate name not known to RS
invalid_certificate 400     certificate or key PEM does not parse, key missing
invalid_chain       400     a chain certificate is not signed by the next one
key_mismatch        400     key does not belong to the leaf
cert_expired        406     leaf is past notAfter
nodes_not_updated   409     some node did not take the change (down, or injected 409)
redirect            3xx     injected by ``fail_requests(status=302, location=...)`` (Location header)
internal_error      500     injected failure (``fail_next(status=500)``)
service_unavailable 503     injected failure (``fail_next(status=503)``)
injected_failure    4xx/5xx injected failure with another status
invalid_fault       400     ``POST /_sim/faults`` with a bad action
invalid_tls_version 400     ``PUT /v1/cluster``: a minimum TLS version this profile refuses
invalid_field       400     ``PUT /v1/cluster``: unknown field, or the other Sentinel spelling
read_only_field     400     ``PUT /v1/cluster``: e.g. ``control_cipher_suites_tls_1_3``
invalid_cipher_list 400     ``PUT /v1/cluster``: a cipher string OpenSSL selects nothing from
invalid_internode…  400     ``invalid_internode_certificate``: INE cert without clientAuth or RSA
                            (7.22.2-79 / 8.0.10-64 on, or ``as-documented``; :mod:`.profile`)
certificate_requi…  400     ``certificate_requirements_not_met``: ``cert_profile=as-documented``
                            and the documented profile is missed (every miss listed)
certificate_ciphe…  400     ``certificate_cipher_mismatch``: 8.2.0-25+, key type vs the path's
                            TLS 1.2 suites
(unknown_certific…  403     also ``ldap_client`` on ``update_cert`` where the bulk PUT exists, and
                            INE names before 7.22.2)
invalid_option      400     ``/_sim/certificates``, ``/_sim/options``: bad body (:mod:`.slots`)
(OCSP, health)      …       ``/v1/ocsp*``: :mod:`.ocsp`; ``/v4/cluster/health``: :mod:`.health`
invalid_value       400     ``PUT /v1/cluster``: wrong type or Sentinel mode; users: bad role,
                            auth_method, or certificate users before RS 7.8.4
missing_mtls_truste 400     ``missing_mtls_trusted_ca``: certificate login on without the CA
invalid_certificat… 400     ``invalid_certificate_subject_line``: not RS's RFC 2253 form
invalid_request     400     (also) users, ``authorize`` ttl, per-database certificate bodies
invalid_parameter   400     ``GET /v1/bdbs/certificates``: page, page_size, expires_before, tls_mode
user_not_found      404     unknown user uid
certificate_not_f…  404     ``certificate_not_found``: the database has no certificate of its own
email_already_exi…  409     ``email_already_exists`` (also ``certificate_subject_line_already_exists``)
change_last_admin…  406     ``change_last_admin_role_not_allowed``
invalid_rladmin_co… 400     ``POST /_sim/rladmin``: a command the stand-in does not know
(from http.py)      400/411/413/431/505: bad_request, payload_too_large, headers_too_large, …
==================  ======  ==========================================================

``GET``/``PUT /v1/bdbs/{uid}`` and ``/_sim/links`` are in :mod:`.bdb_api` (codes in
:mod:`.bdb_config`), the Active-Active routes in :mod:`.crdb_api`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import policy as cluster_policy
from .auth import AuthRejected
from .http import Request, Response
from .tls import KEYLESS_NAMES, CertProblem, UploadItem, utcnow, validate_uploads

if TYPE_CHECKING:
    from .host import Simulator
    from .nodes import Database

RouteHandler = Callable[["Simulator", Request, dict[str, str]], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: RouteHandler
    permission: str = "view"  # "view" | "update"
    available: Callable[[Simulator], bool] = lambda sim: True
    control: bool = False  # simulator control route: no latency, not counted as RS API


ROUTES: list[Route] = []


def route(
    method: str, path: str, permission: str = "view", **kwargs: Any
) -> Callable[[RouteHandler], RouteHandler]:
    """Register a handler; ``{name}`` in ``path`` becomes a ``[^/]+`` parameter."""
    regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "/?$")

    def register(handler: RouteHandler) -> RouteHandler:
        ROUTES.append(Route(method, regex, handler, permission, **kwargs))
        return handler

    return register


class BadRequest(Exception):
    def __init__(self, error_code: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.status, self.error_code, self.description = status, error_code, description


# -- dispatch ------------------------------------------------------------------------------------


async def handle(sim: Simulator, request: Request, client_cert: bytes | None = None) -> Response:
    """Authenticate, route, run, then delay the answer by ``api_latency`` + the ``slow`` fault.

    ``client_cert``: the DER certificate the connection's handshake verified, if any."""
    started = time.monotonic()
    sim.slots.tick(utcnow())  # RS's own INE fallback, observable through the API only
    response, control = await _dispatch(sim, request, client_cert)
    if not control:
        delay = sim.config.api_latency + sim.state.slow_seconds - (time.monotonic() - started)
        if delay > 0:
            await asyncio.sleep(delay)
    return response


async def _dispatch(sim: Simulator, request: Request, client_cert: bytes | None) -> tuple[Response, bool]:
    path = request.path
    fault = None if path.startswith("/_sim/") else sim.state.take_request_fault(request.method, path)
    if fault is not None:
        return _injected(fault.status, fault.location), False
    login = sim.accounts.authenticate(request, client_cert)
    if isinstance(login, str):
        return Response.error(401, "unauthorized", login, **{"WWW-Authenticate": sim.accounts.challenge}), False
    request.login, role = login, login.user.role
    matched_path = False
    for candidate in ROUTES:
        found = candidate.pattern.match(path)
        if found is None:
            continue
        if not candidate.available(sim):  # e.g. bulk PUT on a pre-7.22.2 profile: plain 404
            if candidate.method == request.method:
                return Response.error(404, "not_found", f"Unknown URI {path}"), False
            continue
        if candidate.method != request.method:
            matched_path = True
            continue
        if candidate.permission == "update" and role != "admin":
            return Response.error(403, "insufficient_permissions",
                                  "The user lacks the update_cluster permission"), candidate.control
        if request.method in ("PUT", "POST"):
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                return Response.error(400, "bad_content_type",
                                      "Content-Type must be application/json"), candidate.control
        try:
            return await candidate.handler(sim, request, found.groupdict()), candidate.control
        except (BadRequest, AuthRejected) as exc:
            return Response.error(exc.status, exc.error_code, exc.description), candidate.control
    if matched_path:
        return Response.error(405, "method_not_allowed", f"{request.method} is not allowed on {path}"), False
    return Response.error(404, "not_found", f"Unknown URI {path}"), False


def query_flag(request: Request, name: str) -> bool:
    """``?dry_run``, ``?dry_run=1``, ``?dry_run=true`` -> True; absent, ``0``, ``false``, ``no`` -> False."""
    return request.query.get(name, ["0"])[-1].lower() not in ("0", "false", "no")


def _injected(status: int, location: str | None) -> Response:
    if 300 <= status < 400:
        return Response.error(status, "redirect", f"Moved to {location}", Location=location or "/")
    code = {500: "internal_error", 503: "service_unavailable"}.get(status, "injected_failure")
    return Response.error(status, code, f"Injected failure ({status})")



def _json_body(request: Request) -> Any:
    try:
        return json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("invalid_json", "Request body is not valid JSON") from exc


def _upload_item(obj: Any) -> UploadItem:
    if not isinstance(obj, dict):
        raise BadRequest("invalid_request", "A certificate item must be a JSON object")
    unknown = set(obj) - {"name", "certificate", "key"}
    if unknown:
        raise BadRequest("invalid_request", f"Unknown properties: {sorted(unknown)}")
    name, cert, key = obj.get("name"), obj.get("certificate"), obj.get("key")
    if not isinstance(name, str) or not isinstance(cert, str):
        raise BadRequest("invalid_request", "'name' and 'certificate' are required strings")
    if key is not None and not isinstance(key, str):
        raise BadRequest("invalid_request", "'key' must be a string")
    return UploadItem(name=name, certificate=cert, key=key)


def _update(sim: Simulator, request: Request, items: list[UploadItem], via: str) -> Response:
    sim.state.received_update_bodies.append(request.body)
    rules = sim.slots.rules(via)
    sim.accounts.check_upload(item.name for item in items)
    try:
        rules.check_names(items)
        materials = validate_uploads(items, utcnow(), known=rules.known_names())
        rules.check_profiles(materials)
    except CertProblem as exc:
        return Response.error(exc.status, exc.error_code, exc.description)
    status, body = sim.state.apply(materials)
    if status in (200, 409):  # applied, at least at cluster level
        sim.slots.uploaded(materials)
    return Response.json(body, status)


# -- RS routes -----------------------------------------------------------------------------------


def _node_json(sim: Simulator, uid: int) -> dict[str, Any]:
    node = sim.state.nodes[uid]
    return {
        "uid": node.uid,
        "addr": node.addr,
        "external_addr": [],
        "status": "down" if node.down else "active",
        "software_version": sim.state.version,
        "hostname": node.hostname,
        "shard_count": sum(1 for db in sim.config.database_list if node in sim.state.database_nodes(db)),
        "uptime": int(time.monotonic() - node.started),
        "accept_servers": True,
        "rack_id": "",
    }


@route("GET", "/v1/nodes")
async def get_nodes(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    return Response.json([_node_json(sim, uid) for uid in sorted(sim.state.nodes)])


@route("GET", "/v1/nodes/{uid}")
async def get_node(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    if not params["uid"].isdigit() or int(params["uid"]) not in sim.state.nodes:
        return Response.error(404, "not_found", f"Node {params['uid']} does not exist")
    return Response.json(_node_json(sim, int(params["uid"])))


def _cluster_json(sim: Simulator, settings: dict[str, object]) -> dict[str, Any]:
    state, cfg = sim.state, sim.config
    body: dict[str, Any] = {
        "name": cfg.fqdn,
        "software_version": state.version,
        "cm_port": cfg.cm_port,
        "cnm_https_port": cfg.api_port,
        "cnm_http_port": 8080,
        **settings,
        "proxy_certificate": state.certs["proxy"].chain_pem,
        "syncer_certificate": state.certs["syncer"].chain_pem,
    }
    if cluster_policy.is_legacy(state.version):
        body.pop("sentinel_tls_mode", None)  # before 7.4.2 only sentinel_ssl_policy existed
    return body


@route("GET", "/v1/cluster")
async def get_cluster(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    return Response.json(_cluster_json(sim, sim.state.settings))


@route("PUT", "/v1/cluster", "update")
async def put_cluster(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    """Validate every field by version profile, then apply all (or, with ``?dry_run``, nothing).

    Listeners read the settings on each new handshake, so control and data changes apply at
    once; the discovery service keeps its settings until ``restart_sentinel``.
    """
    dry_run = query_flag(request, "dry_run")
    sim.state.received_cluster_updates.append((dry_run, request.body))
    login_changes, body = sim.accounts.split_cluster_update(_json_body(request))  # certificate login, Basic
    try:
        changes = cluster_policy.validate_update(body, sim.state.version) if body or not login_changes else {}
    except cluster_policy.PolicyRejected as exc:
        raise BadRequest(exc.error_code, exc.description) from exc
    merged = cluster_policy.merge(sim.state.settings, {**changes, **login_changes})
    if not dry_run:
        sim.state.settings = merged
    return Response.json(_cluster_json(sim, merged))


def bdb_json(sim: Simulator, db: Database) -> dict[str, Any]:
    """One bdb object; its replication fields (and their link status) come from ``sim.replication``."""
    fqdn = sim.config.fqdn
    addrs = [n.addr for n in sim.state.database_nodes(db)]
    return {
        "uid": db.uid, "name": db.name, "port": db.port,
        "tls_mode": "enabled" if db.tls else "disabled", "ssl": db.tls,
        "proxy_policy": db.proxy_policy, "status": "active",
        "endpoints": [{"uid": f"{db.uid}:1", "dns_name": f"redis-{db.port}.{fqdn}", "port": db.port,
                       "addr": addrs, "addr_type": "external", "proxy_policy": db.proxy_policy}],
        **sim.replication.bdb_fields(db.uid),
    }


@route("GET", "/v1/bdbs")
async def get_bdbs(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    await sim.replication.refresh()  # link status from fresh syncer handshakes (none without links)
    return Response.json([bdb_json(sim, db) for db in sim.config.database_list])


@route("GET", "/v1/cluster/certificates")
async def get_certificates(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    body: dict[str, str] = {}
    for name, material in sim.state.certs.items():
        body[f"{name}_cert"] = material.chain_pem
        if material.key_pem and name not in KEYLESS_NAMES:
            body[f"{name}_key"] = material.key_pem
    return Response.json(body)


@route("PUT", "/v1/cluster/update_cert", "update")
async def put_update_cert(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    return _update(sim, request, [_upload_item(_json_body(request))], "update_cert")


@route("PUT", "/v1/cluster/certificates", "update", available=lambda sim: sim.state.bulk_put_available)
async def put_certificates(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    body = _json_body(request)
    keys = set(body) if isinstance(body, dict) else set()
    items = body.get("certificates") if isinstance(body, dict) else None
    if keys != {"certificates"} or not isinstance(items, list):
        raise BadRequest("invalid_request", "Body must be {\"certificates\": [...]} and nothing else")
    if not items:
        raise BadRequest("invalid_request", "'certificates' is empty")
    return _update(sim, request, [_upload_item(item) for item in items], "bulk")


def expiry_alert(sim: Simulator, now: dt.datetime) -> dict[str, Any]:
    """``cluster_certs_about_to_expire`` as ``GET /v1/cluster/alerts`` shows it (also the health report)."""
    setting = sim.state.settings["alert_settings"]["cluster_certs_about_to_expire"]  # type: ignore[index]
    threshold = dt.timedelta(days=int(setting["threshold"]))
    expiring = [name for name, m in sim.state.certs.items() if m.not_after - now < threshold]
    firing = bool(setting["enabled"]) and bool(expiring)
    return {
        "change_time": now.isoformat(),
        "change_value": {"certs_about_to_expire": expiring, "global_threshold": setting["threshold"],
                         "state": firing},
        "enabled": setting["enabled"], "severity": "WARNING" if firing else "INFO",
        "state": firing, "threshold": setting["threshold"],
    }


@route("GET", "/v1/cluster/alerts")
async def get_alerts(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    return Response.json({"cluster_certs_about_to_expire": expiry_alert(sim, utcnow())})


# -- simulator control routes --------------------------------------------------------------------


@route("GET", "/_sim/state", "update", control=True)
async def get_sim_state(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    return Response.json(sim.state.snapshot())


FAULT_ACTIONS = ("fail_next", "slow", "node_down", "stale", "clear_faults", "override_node_tls",
                 "restart_sentinel", "bdb_stale", "fail_requests")


@route("POST", "/_sim/faults", "update", control=True)
async def post_sim_faults(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    """Body ``{"action": "<name>", ...keyword arguments}`` or ``{"actions": [...]}``.

    Actions: fail_next(count, status), slow(seconds), node_down(uid, down), stale(uid, seconds,
    cert_name), clear_faults(), override_node_tls(uid, listener, min_version, ciphers),
    restart_sentinel(uid), bdb_stale(uid, seconds, bdb_uid), fail_requests(count, status, method,
    path, location). Answers the fault snapshot.
    """
    body = _json_body(request)
    actions = body.get("actions", [body]) if isinstance(body, dict) else None
    if not isinstance(actions, list) or not all(isinstance(a, dict) for a in actions):
        raise BadRequest("invalid_fault", "Body must be an action object or {\"actions\": [...]}")
    for action in actions:
        kwargs = dict(action)
        name = kwargs.pop("action", None)
        if name not in FAULT_ACTIONS:
            raise BadRequest("invalid_fault", f"Unknown action {name!r}; one of {FAULT_ACTIONS}")
        try:
            await sim.apply_fault(name, **kwargs)
        except (TypeError, ValueError) as exc:
            raise BadRequest("invalid_fault", f"{name}: {exc}") from exc
    return Response.json(sim.state.faults_snapshot())
