"""``GET /v4/cluster/health``: the consolidated health report (RS 8.0.16+; 404 ``not_found`` below).

Sheet ``rs-8x-and-public-cas-2026.md`` §1.4 names ``certificates[]: {type, expired, valid_until}``,
``active_alerts[]``, ``license`` and ``nodes[]``; their inner shapes beyond that are invented here:

* ``certificates``: one entry per certificate the cluster holds (the same names as
  ``GET /v1/cluster/certificates``, INE and planted ones included), from the cluster's copy;
  ``valid_until`` is the leaf's notAfter in ISO 8601 UTC.
* ``active_alerts``: ``cluster_certs_about_to_expire`` when it fires (as ``GET /v1/cluster/alerts``),
  ``cluster_ocsp_status_revoked`` / ``cluster_ocsp_query_failed`` when enabled in ``alert_settings``
  and the OCSP cache says REVOKED / the last query failed.
* ``license``: a fixed, valid licence; ``nodes``: uid, address, status, version.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from . import api
from .http import Request, Response
from .tls import utcnow
from .versions import version_tuple

if TYPE_CHECKING:
    from .host import Simulator

HEALTH_SINCE = (8, 0, 16)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def active_alerts(sim: Simulator, now: dt.datetime) -> list[dict[str, Any]]:
    alerts = []
    expiry = api.expiry_alert(sim, now)
    if expiry["state"]:
        alerts.append({"name": "cluster_certs_about_to_expire", "severity": expiry["severity"],
                       "change_time": expiry["change_time"], "details": expiry["change_value"]})
    settings = sim.state.settings.get("alert_settings")
    settings = settings if isinstance(settings, dict) else {}
    status = sim.ocsp.status_json().get("cert_status")
    for name, firing in (("cluster_ocsp_status_revoked", status == "REVOKED"),
                         ("cluster_ocsp_query_failed", sim.ocsp.last_error is not None)):
        if firing and settings.get(name) is True:
            alerts.append({"name": name, "severity": "WARNING", "change_time": _iso(now)})
    return alerts


@api.route("GET", "/v4/cluster/health", available=lambda sim: version_tuple(sim.state.version)[:3] >= HEALTH_SINCE)
async def get_cluster_health(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    now = utcnow()
    certificates = [{"type": name, "expired": m.not_after <= now, "valid_until": _iso(m.not_after)}
                    for name, m in sorted(sim.state.certs.items())]
    nodes = [{"uid": n.uid, "address": n.addr, "status": "down" if n.down else "active",
              "software_version": sim.state.version} for n in sorted(sim.state.nodes.values(), key=lambda n: n.uid)]
    return Response.json({
        "cluster": {"name": sim.config.fqdn, "software_version": sim.state.version},
        "license": {"expired": False,
                    "expiration_date": _iso(sim.ca.cert.not_valid_before_utc + dt.timedelta(days=365))},
        "nodes": nodes,
        "certificates": certificates,
        "active_alerts": active_alerts(sim, now),
    })
