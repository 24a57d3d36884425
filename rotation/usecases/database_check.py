"""`rotation check`'s fleet view of per-database certificates (RS 8.0.2+).

The databases the inventory manages (``databases:``) are read like any certificate, by an SNI
handshake on each node (rows ``db:<key>``). The others are found with one REST call per cluster,
``GET /v1/bdbs/certificates?expires_before=``: only those expiring within the cluster's
``renew_before`` come back, so a fleet with thousands of databases costs no handshake for them.
Each becomes one row saying it is due and not managed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from rotation.adapters.cluster import ClusterSession
from rotation.config import Inventory
from rotation.core import certs
from rotation.core.errors import CertificateError
from rotation.core.renewal import due_reason
from rotation.core.versions import DATABASE_CERTIFICATES_SINCE, at_least

LONGEST_LIFETIME = timedelta(days=398)  # the CA/B Forum's longest: a "33%" renew_before asks this far ahead


def unmanaged_due(inventory: Inventory, session: ClusterSession, now: datetime,
                  listed: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Rows for the databases with a certificate of their own that expires within ``renew_before`` and
    that the inventory does not manage (one REST call, none when ``listed`` holds what
    ``GET /v1/bdbs/certificates`` already answered; none before RS 8.0.2)."""
    view = session.view()
    if not at_least(view.version, DATABASE_CERTIFICATES_SINCE):
        return []
    cluster = inventory.cluster(session.name)
    renew_before = cluster.renew_before or inventory.renew_before
    managed = {db.uid for key in cluster.databases if (db := view.database(key)) is not None}
    names = {db.uid: db.name for db in view.databases}
    rows = []
    if listed is None:
        listed = session.client.database_certificates(expires_before=now + renew_before.threshold(LONGEST_LIFETIME))
    for item in listed:
        uid = item.get("bdb_uid")
        if not isinstance(uid, int) or uid in managed or not isinstance(item.get("cert"), str):
            continue
        try:
            leaf = certs.load_certificates(item["cert"], where=f"database {uid} certificate")[0]
        except CertificateError:
            continue
        not_after = certs.not_after(leaf)
        reason = due_reason(not_after, now, renew_before, certs.not_before(leaf))
        if reason is None:
            continue
        days = (not_after - now).total_seconds() / 86400
        rows.append({"cluster": session.name, "cert": f"db:{names.get(uid, uid)}", "node": "api",
                     "endpoint": "GET /v1/bdbs/certificates", "fingerprint": certs.fingerprint(leaf),
                     "not_after": not_after.isoformat(), "days_left": round(days, 1), "status": "due",
                     "reason": f"{reason}; not managed (add it under clusters.{session.name}.databases)"})
    return rows


__all__ = ["unmanaged_due"]
