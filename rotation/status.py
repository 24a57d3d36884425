"""The service's view of every certificate, read from Redis (for `rotation status` and chat)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rotation.errors import ConfigError
from rotation.pipeline import utc_now
from rotation.redaction import redact_text, redact_url
from rotation.service import ServiceContext


def _short_time(value: str | None) -> str | None:
    if not value:
        return None
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")


def service_status(ctx: ServiceContext, cluster: str | None = None) -> dict[str, Any]:
    store = ctx.redis_store
    if store is None:
        raise ConfigError("`status` reads the service's state in Redis (ROTATION_STORE=redis)")
    import redis

    try:
        states = store.all_states()
        pending = store.pending()
        scans = store.scans()
    except redis.RedisError as exc:
        raise ConfigError(f"cannot read the service state from {redact_url(ctx.settings.redis_url)}: "
                          f"{redact_text(str(exc))}") from None
    holders = ctx.locker.holders(list(states)) if hasattr(ctx.locker, "holders") else {}
    now = utc_now()
    rows = []
    for (name, cert), state in sorted(states.items()):
        if cluster and name != cluster:
            continue
        not_after = [datetime.fromisoformat(v) for v in (state.get("not_after") or {}).values()]
        left = (min(not_after) - now).total_seconds() / 86400 if not_after else None
        holder = holders.get((name, cert))
        rows.append({
            "cluster": name,
            "cert": cert,
            "health": state.get("health", "unknown"),
            "reason": state.get("reason", ""),
            "days_left": f"{left:.1f}" if left is not None else "-",
            "served": state.get("served") or {},
            "intended": state.get("intended"),
            "last_scan": _short_time(state.get("last_scan")),
            "last_rotation": state.get("last_rotation"),
            "last_outcome": state.get("last_outcome"),
            "last_error": state.get("last_error"),
            "failures": int(state.get("failures") or 0),
            "next_attempt": _short_time(state.get("next_attempt")),
            "in_flight": pending.get((name, cert)) or holder,
        })
    in_flight = [{"cluster": c, "cert": n, "rotation_id": i} for (c, n), i in sorted(pending.items())
                 if not cluster or c == cluster]
    return {"certificates": rows, "in_flight": in_flight,
            "scans": {c: s for c, s in scans.items() if not cluster or c == cluster}}
